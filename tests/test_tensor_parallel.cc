// Tensor parallelism on the CPU backend (model/tensor_parallel.h over dist/thread_group.h): each
// rank a thread with its own backend, sharded model and KV cache, all fed the same steps.
//   - Tiny Hugging Face checkpoints split 2 and 4 ways (whole KV heads a rank, and KV heads
//     replicated where there are fewer than ranks; q/k/v biases, q/k norms, fused Phi-3 weights,
//     Gemma's GeGLU and sandwich norms): every rank's logits are the same bits, within 1e-5 of the
//     unsplit model's (float32 sums in another order) and within 1e-4 of transformers', as the
//     unsplit model's are; greedy continuations equal transformers'.
//   - SmolLM2-135M (9 heads, 3 KV heads, intermediate 1536: sizes 3 divides all of them), float32
//     weights: within 1e-4 of transformers and the same greedy tokens.
//   - The engine with tensor_parallel_size 2 and 4 (engine/tp_step_model.h): the same greedy tokens
//     as the plain model for a batch of prompts with chunked prefills and preemption, and no page
//     left in use; a size that does not split the model and the cuda backend are refused by name.
//   - A rank that never runs its pass stops the others within the group's timeout, naming it;
//     models that do not split are refused by name.
//   - Ranks that meet over TCP (engine/tp_step_model.h's processes, here threads of the test so
//     that the sanitizers see both ends: ranks 1..3 run by run_tensor_parallel_worker, as
//     `nanocascade --tp-rank` runs them): the thread group's greedy tokens, with preemption;
//     every worker returns once the engine is gone; a worker that leaves mid-run stops the
//     engine's next step with an error naming it.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <random>
#include <thread>

#include "core/error.h"
#include "dist/socket_group.h"
#include "dist/tcp_link.h"
#include "dist/thread_group.h"
#include "engine/step_model.h"
#include "engine/tp_step_model.h"
#include "fake_model.h"
#include "formats/gguf.h"
#include "golden.h"
#include "model/model_loader.h"
#include "model/tensor_parallel.h"
#include "nanocascade/engine.h"
#include "seq_runner.h"

namespace nc {
namespace {

using testing::GoldenPrompt;
using testing::SeqRunner;

// Runs body(rank, model) for every rank of a `size`-way split of `lm`, one thread each; returns
// each rank's error message ("" if none).
std::vector<std::string> run_split(const LoadedModel& lm, int size,
                                   std::chrono::milliseconds timeout,
                                   const std::function<void(int, LlamaModel&)>& body) {
  auto group = ThreadGroup::make(size, timeout);
  std::vector<std::string> errors(static_cast<size_t>(size));
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r)
    threads.emplace_back([&, r] {
      auto comm = group->communicator(r);
      try {
        auto backend = make_cpu_backend();
        LlamaModel model(shard_config(lm.config, r, size),
                         shard_weights(lm.config, lm.weights, r, size), *backend);
        model.set_tensor_parallel(comm.get());
        body(r, model);
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
        comm->abort(e.what());
      }
    });
  for (std::thread& t : threads) t.join();
  return errors;
}

// Every golden prompt fed in chunks of 6 (prefill chunks and decodes share steps); each rank's
// logits of every position.
std::vector<std::vector<std::vector<float>>> split_logits(const LoadedModel& lm,
                                                          const std::vector<GoldenPrompt>& golden,
                                                          int size) {
  std::vector<std::vector<std::vector<float>>> out(static_cast<size_t>(size));
  std::vector<std::vector<std::vector<int32_t>>> chunks;
  for (const GoldenPrompt& g : golden)
    chunks.push_back(testing::chunks_of(g.ids, testing::ChunkMode::Chunks));
  const auto errors = run_split(lm, size, std::chrono::seconds(60), [&](int r, LlamaModel& m) {
    SeqRunner runner(m, 16, 256);
    out[size_t(r)] = runner.run_chunks(chunks);
  });
  for (const std::string& e : errors) EXPECT_EQ(e, "");
  return out;
}

struct TpCase {
  std::string model;
  int size;
};

class TinyTensorParallel : public ::testing::TestWithParam<TpCase> {};

TEST_P(TinyTensorParallel, MatchesTheWholeModelAndTransformers) {
  const TpCase& tc = GetParam();
  const std::string dir = testing::fixtures_dir() + "/" + tc.model;
  const std::vector<GoldenPrompt> golden = testing::read_golden(dir);
  ASSERT_FALSE(golden.empty());
  const LoadedModel lm = load_model(dir);
  const int64_t V = lm.config.vocab_size;
  auto backend = make_cpu_backend();
  LlamaModel whole(lm.config, lm.weights, *backend);
  SeqRunner runner(whole, 16, 256);
  std::vector<std::vector<std::vector<int32_t>>> chunks;
  for (const GoldenPrompt& g : golden)
    chunks.push_back(testing::chunks_of(g.ids, testing::ChunkMode::Chunks));
  const auto want = runner.run_chunks(chunks);
  const auto got = split_logits(lm, golden, tc.size);
  for (int r = 0; r < tc.size; ++r) {
    ASSERT_EQ(got[size_t(r)].size(), golden.size());
    EXPECT_EQ(got[size_t(r)], got[0]) << "rank " << r << " differs from rank 0";
  }
  for (size_t p = 0; p < golden.size(); ++p)
    for (int64_t row = 0; row < golden[p].rows; ++row) {
      const float* g = got[0][p].data() + row * V;
      EXPECT_LE(testing::rel_err(g, want[p].data() + row * V, size_t(V)), 1e-5)
          << "prompt " << p << " row " << row << " against the whole model";
      EXPECT_LE(testing::rel_err(g, golden[p].logits.data() + row * V, size_t(V)), 1e-4)
          << "prompt " << p << " row " << row << " against transformers";
    }
}

TEST_P(TinyTensorParallel, GreedyContinuationsEqualTransformers) {
  const TpCase& tc = GetParam();
  const std::string dir = testing::fixtures_dir() + "/" + tc.model;
  const std::vector<GoldenPrompt> golden = testing::read_golden(dir);
  const LoadedModel lm = load_model(dir);
  const int64_t V = lm.config.vocab_size;
  std::vector<std::vector<int32_t>> rank0;
  const auto errors = run_split(lm, tc.size, std::chrono::seconds(60), [&](int r, LlamaModel& m) {
    SeqRunner runner(m, 16, 256);
    auto generated = testing::greedy_decode(runner, golden, V, nullptr);
    if (r == 0) rank0 = std::move(generated);
  });
  for (const std::string& e : errors) EXPECT_EQ(e, "");
  ASSERT_EQ(rank0.size(), golden.size());
  for (size_t p = 0; p < golden.size(); ++p) EXPECT_EQ(rank0[p], golden[p].greedy) << p;
}

std::string tp_name(const ::testing::TestParamInfo<TpCase>& info) {
  std::string m = info.param.model;
  for (char& c : m)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return m + "_tp" + std::to_string(info.param.size);
}

// (4 heads, 2 KV heads: 2 ranks hold one KV head each, 4 ranks share them in pairs; tiny-phi3 and
// tiny-gemma2 have 2 heads and 1 KV head: both ranks hold it.)
INSTANTIATE_TEST_SUITE_P(Fixtures, TinyTensorParallel,
                         ::testing::Values(TpCase{"tiny-llama", 2}, TpCase{"tiny-llama", 4},
                                           TpCase{"tiny-qwen2", 2}, TpCase{"tiny-qwen2", 4},
                                           TpCase{"tiny-qwen3", 4}, TpCase{"tiny-mistral", 2},
                                           TpCase{"tiny-phi3", 2}, TpCase{"tiny-gemma2", 2},
                                           TpCase{"tiny-qwen3", 2}),
                         tp_name);

TEST(SmolLM2TensorParallelSlow, ThreeRanksMatchTransformersAndGreedyTokens) {
  const std::string path = std::string(NC_DEFAULT_MODEL_DIR) + "/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "default model not downloaded";
  const std::vector<GoldenPrompt> golden =
      testing::read_golden(testing::fixtures_dir() + "/smollm2");
  ASSERT_GE(golden.size(), 3u);
  LoadedModel lm = load_model(path);
  for (auto& [name, t] : lm.weights) t = dequantized(t);
  const int64_t V = lm.config.vocab_size;
  std::vector<std::vector<int32_t>> rank0;
  std::vector<std::vector<float>> first(golden.size());
  const auto errors = run_split(lm, 3, std::chrono::seconds(120), [&](int r, LlamaModel& m) {
    SeqRunner runner(m, 16, 1024);
    auto generated = testing::greedy_decode(runner, golden, V, [&](size_t p, const float* last) {
      if (r == 0) first[p].assign(last, last + V);
    });
    if (r == 0) rank0 = std::move(generated);
  });
  for (const std::string& e : errors) EXPECT_EQ(e, "");
  ASSERT_EQ(rank0.size(), golden.size());
  for (size_t p = 0; p < golden.size(); ++p) {
    EXPECT_LE(testing::rel_err(first[p].data(), golden[p].logits.data(), size_t(V)), 1e-4) << p;
    EXPECT_EQ(rank0[p], golden[p].greedy) << "prompt " << p;
  }
}

const std::string kTinyLlama = "/tiny-llama";

// tiny-llama split as `o` says (o.tensor_parallel_size ranks: threads, or ranks meeting at
// o.dist_init_addr).
std::unique_ptr<StepModel> tiny_llama(const StepModelOptions& o) {
  return make_llama_step_model(testing::fixtures_dir() + kTinyLlama, o);
}

StepModelOptions split(int tp) {
  StepModelOptions o;
  o.tensor_parallel_size = tp;
  return o;
}

// An engine on the CPU over `model` with a pool of `pages` pages of 4 tokens.
std::unique_ptr<Engine> engine_over(std::unique_ptr<StepModel> model, int pages) {
  EngineConfig cfg;
  cfg.page_size = 4;
  cfg.max_num_batched_tokens = 24;
  cfg.kv_cache_memory = std::to_string(model->kv_bytes_per_page(4) * pages);
  return std::make_unique<Engine>(cfg, std::move(model), std::make_unique<fake::FakeCodec>());
}

// n prompts of 1..30 ids below 512.
std::vector<std::vector<int32_t>> random_prompts(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> p(size_t(1 + rng() % 30));
    for (int32_t& t : p) t = int32_t(rng() % 512);
    out.push_back(p);
  }
  return out;
}

TEST(TensorParallelEngine, SameGreedyTokensAsThePlainModel) {
  const auto prompts = random_prompts(12, 5);
  const SamplingParams sp = fake::greedy_ignoring_eos(16);
  const auto want = engine_over(tiny_llama(split(1)), 256)->generate(prompts, sp);
  for (int tp : {2, 4}) {
    auto e = engine_over(tiny_llama(split(tp)), 14);  // 56 tokens: one at a time fits, some wait
    const auto got = e->generate(prompts, sp);
    for (size_t i = 0; i < prompts.size(); ++i)
      EXPECT_EQ(got[i].token_ids, want[i].token_ids) << "tp " << tp << " prompt " << i;
    EXPECT_GT(e->stats().num_preemptions, 0);
    EXPECT_EQ(e->stats().used_pages, 0);
  }
}

TEST(TensorParallelEngine, RandomWeightsWithATiedSplitVocabularyRun) {
  // tiny-qwen2 ties its embeddings and 512 ids split in two: each rank's head is its own rows.
  StepModelOptions o;
  o.tensor_parallel_size = 2;
  o.dummy_weights = true;
  auto model = make_llama_step_model(testing::fixtures_dir() + "/tiny-qwen2/config.json", o);
  EngineConfig cfg;
  cfg.page_size = 4;
  cfg.kv_cache_memory = std::to_string(model->kv_bytes_per_page(4) * 64);
  Engine e(cfg, std::move(model), std::make_unique<fake::FakeCodec>());
  const std::vector<std::vector<int32_t>> prompts{{1, 2, 3}, {500, 7}};
  const auto out = e.generate(prompts, fake::greedy_ignoring_eos(6));
  ASSERT_EQ(out.size(), 2u);
  for (const auto& o2 : out) EXPECT_EQ(o2.token_ids.size(), 6u);
}

TEST(TensorParallelEngine, RefusesWhatItCannotSplitOrRun) {
  {
    StepModelOptions fp8;
    fp8.tensor_parallel_size = 2;
    try {
      make_llama_step_model(testing::fixtures_dir() + "/tiny-llama-fp8", fp8);
      FAIL() << "an FP8 checkpoint split";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
      EXPECT_NE(std::string(e.what()).find("FP8"), std::string::npos) << e.what();
    }
  }
  StepModelOptions o;
  o.tensor_parallel_size = 3;  // 4 heads
  EXPECT_THROW(make_llama_step_model(testing::fixtures_dir() + "/tiny-llama", o), Error);
  o.tensor_parallel_size = 2;
  o.backend = "cuda";
  try {
    make_llama_step_model(testing::fixtures_dir() + "/tiny-llama", o);
    FAIL() << "cuda ranks accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("NCCL"), std::string::npos) << e.what();
  }
}

TEST(TensorParallelFaults, ARankThatNeverRunsStopsTheOthersNamingIt) {
  const LoadedModel lm = load_model(testing::fixtures_dir() + "/tiny-llama");
  const auto start = std::chrono::steady_clock::now();
  const auto errors = run_split(lm, 2, std::chrono::milliseconds(500), [&](int r, LlamaModel& m) {
    if (r == 1) return;  // "killed" before its pass
    SeqRunner runner(m, 16, 64);
    runner.run_chunks({{{1, 2, 3}}});
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(s, 30.0);
  EXPECT_NE(errors[0].find("rank(s) 1"), std::string::npos) << errors[0];
}

TEST(TensorParallelFaults, ModelsThatDoNotSplitAreRefusedByName) {
  const LoadedModel lm = load_model(testing::fixtures_dir() + "/tiny-llama");
  try {
    shard_config(lm.config, 0, 3);
    FAIL() << "3 ranks over 4 heads accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("4 attention heads"), std::string::npos) << e.what();
  }
  // The vocabulary splits where the size divides it: rank 1 of 2 holds rows 256..511 (and the
  // embeddings one zero row more).
  const ModelConfig half = shard_config(lm.config, 1, 2);
  EXPECT_EQ(half.vocab_first, 256);
  EXPECT_EQ(half.vocab_count, 256);
  const WeightMap w1 = shard_weights(lm.config, lm.weights, 1, 2);
  EXPECT_EQ(w1.at("model.embed_tokens.weight").shape, (Shape{257, lm.config.hidden_size}));
  EXPECT_EQ(w1.at("lm_head.weight").shape, (Shape{256, lm.config.hidden_size}));
  const LoadedModel moe = load_model(testing::fixtures_dir() + "/tiny-qwen3-moe");
  EXPECT_THROW(shard_config(moe.config, 0, 2), Error);
  EXPECT_THROW(shard_weights(lm.config, lm.weights, 2, 2), Error);  // rank outside the group
}

// Ranks 1..size-1 of a group at `addr`, each on its own thread; their errors ("" if none).
struct Workers {
  std::vector<std::thread> threads;
  std::vector<std::string> errors;
  Workers(const std::string& path, StepModelOptions o, int size) : errors(size_t(size)) {
    for (int r = 1; r < size; ++r)
      threads.emplace_back([this, path, o, r] {
        try {
          run_tensor_parallel_worker(path, o, r);
        } catch (const std::exception& e) {
          errors[size_t(r)] = e.what();
        }
      });
  }
  void join() {
    for (std::thread& t : threads) t.join();
    threads.clear();
  }
  ~Workers() { join(); }
};

TEST(TensorParallelSockets, RanksOverTcpGiveTheThreadGroupsTokens) {
  const std::string path = testing::fixtures_dir() + kTinyLlama;
  const auto ps = random_prompts(10, 9);
  const auto want =
      engine_over(tiny_llama(split(4)), 256)->generate(ps, fake::greedy_ignoring_eos(12));
  StepModelOptions sockets = split(4);
  sockets.dist_init_addr = free_local_address();
  Workers workers(path, sockets, 4);
  {
    auto e = engine_over(tiny_llama(sockets), 14);  // some requests must wait
    const auto got = e->generate(ps, fake::greedy_ignoring_eos(12));
    for (size_t i = 0; i < ps.size(); ++i)
      EXPECT_EQ(got[i].token_ids, want[i].token_ids) << "prompt " << i;
    EXPECT_GT(e->stats().num_preemptions, 0);
    EXPECT_EQ(e->health_error(), "");
  }  // the engine's model stops the workers
  workers.join();
  for (const std::string& err : workers.errors) EXPECT_EQ(err, "");
}

TEST(TensorParallelSockets, AWorkerThatLeavesStopsTheEngineNamingIt) {
  StepModelOptions o = split(2);
  o.dist_init_addr = free_local_address();
  // Rank 1 joins, takes the engine's set-up commands (reserve, allocate the pages), then its
  // "process" ends: its end of the connection closes.
  std::thread leaver([&] {
    try {
      auto comm = make_socket_peer(parse_host_port(o.dist_init_addr), 1, 2,
                                   std::chrono::seconds(30), std::chrono::seconds(30));
      for (int command = 0; command < 2; ++command) {
        std::vector<std::byte> bytes;
        comm->broadcast(bytes, 0, Communicator::Wait::Unbounded);
      }
    } catch (const std::exception&) {
    }
  });
  auto e = engine_over(tiny_llama(o), 64);
  leaver.join();
  try {
    e->generate(random_prompts(2, 9), fake::greedy_ignoring_eos(4));
    FAIL() << "a step ran without rank 1";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("rank 1"), std::string::npos) << err.what();
  }
  EXPECT_NE(e->health_error().find("rank 1"), std::string::npos) << e->health_error();
}

TEST(TensorParallelSockets, APageCountsTheShardsOfTheRanksOnThisMachineOnly) {
  const std::string path = testing::fixtures_dir() + kTinyLlama;
  const int64_t whole = tiny_llama(split(1))->kv_bytes_per_page(4);
  for (int nnodes : {1, 2}) {  // 2: rank 1 is "another machine", its shard in its own memory
    StepModelOptions o = split(2);
    o.nnodes = nnodes;
    o.dist_init_addr = free_local_address();
    Workers workers(path, o, 2);
    {
      auto model = tiny_llama(o);
      EXPECT_EQ(model->kv_bytes_per_page(4), whole / nnodes) << nnodes << " nodes";
      EXPECT_EQ(model->memory().weight_bytes * nnodes, tiny_llama(split(2))->memory().weight_bytes)
          << nnodes << " nodes";
    }  // stops rank 1
    workers.join();
    for (const std::string& err : workers.errors) EXPECT_EQ(err, "");
  }
}

TEST(TensorParallelSockets, AWorkerWhoseShardCannotLoadStopsTheEnginesSetUpNamingIt) {
  StepModelOptions o = split(2);
  o.dist_init_addr = free_local_address();
  const std::string missing = testing::fixtures_dir() + "/no-such-model";
  std::string worker_error;
  std::thread worker([&] {
    try {
      run_tensor_parallel_worker(missing, o, 1);
    } catch (const std::exception& e) {
      worker_error = e.what();
    }
  });
  const auto start = std::chrono::steady_clock::now();
  try {
    engine_over(tiny_llama(o), 64);
    ADD_FAILURE() << "the engine formed a group without rank 1";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("rank 1 could not join"), std::string::npos) << what;
    EXPECT_NE(what.find("no-such-model"), std::string::npos) << what;
  }
  // At once, not after the join time (900 s).
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 60.0);
  worker.join();
  EXPECT_NE(worker_error.find("no-such-model"), std::string::npos) << worker_error;
}

}  // namespace
}  // namespace nc

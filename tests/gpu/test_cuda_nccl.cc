// Tensor parallelism's NCCL communicator (backend/nccl.h) on one GPU: a group of one rank runs
// the sharded model's collective path (the embedding's and each layer's all-reduces, the
// vocabulary's all-gather, all on the backend's stream and captured into the decode graphs) and
// must give exactly the plain model's logits. The multi-GPU runs are tools/gpu_tp.sh's.
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/nccl.h"
#include "dist/thread_group.h"
#include "gpu_test_util.h"
#include "model/tensor_parallel.h"
#include "seq_runner.h"
#include "synthetic_model.h"

namespace nc::testing {
namespace {

// A group of one over NCCL on `cuda`, or null (and the test skipped) where NCCL cannot load.
std::unique_ptr<Communicator> nccl_group_of_one(Backend& cuda) {
  if (!nccl_built()) return nullptr;
  try {
    auto control = ThreadGroup::make(1, std::chrono::seconds(30))->communicator(0);
    return make_nccl_communicator(cuda, std::move(control), nccl_unique_id());
  } catch (const Error& e) {
    if (std::string(e.what()).find("cannot load the library") == std::string::npos) throw;
    std::printf("NCCL not loadable here: %s\n", e.what());
    return nullptr;
  }
}

// The synthetic head_dim-64 Llama, untied (the vocabulary shard's head is its own tensor).
ModelConfig hd64_llama() {
  ModelConfig c = synthetic_config("llama");
  c.tie_embeddings = false;
  return c;
}

TEST(CudaNccl, AGroupOfOneRunsTheShardedPathWithThePlainModelsExactLogits) {
  auto plain_b = make_cuda_backend(0), tp_b = make_cuda_backend(0);
  std::unique_ptr<Communicator> comm = nccl_group_of_one(*tp_b);
  if (!comm) GTEST_SKIP() << "no NCCL";
  // A vocabulary shard holding all of it (shard_config splits only from 2 ranks): the TP model's
  // logits go through the all-gather and its embeddings through the all-reduce. Both models
  // have this config, so both draw the same random weights; only the TP one runs collectives.
  ModelConfig cfg = shard_config(hd64_llama(), 0, 1);
  cfg.vocab_first = 0;
  cfg.vocab_count = cfg.vocab_size;
  LlamaModel plain(cfg, RandomWeights{11}, *plain_b), tp(cfg, RandomWeights{11}, *tp_b);
  tp.set_tensor_parallel(comm.get());
  for (LlamaModel* m : {&plain, &tp}) {
    m->set_graph_options(GraphOptions{true, 8});
    m->reserve_workspace(512, 512);
  }
  SeqRunner rp(plain, 16, 256), rt(tp, 16, 256);
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> tok(0, 999);
  std::vector<int> ids;
  std::vector<std::vector<int32_t>> prompts;
  for (int s = 0; s < 5; ++s) {
    ids.push_back(rp.add_sequence());
    rt.add_sequence();
    prompts.emplace_back(size_t(20 + 31 * s));
    for (int32_t& t : prompts.back()) t = tok(rng);
  }
  int64_t mismatched = 0, steps = 0;
  auto run = [&](const std::vector<std::vector<int32_t>>& toks) {
    const auto a = rp.step(ids, toks), b = rt.step(ids, toks);
    for (size_t i = 0; i < ids.size(); ++i)
      mismatched += a[i].size() != b[i].size() ||
                    std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0;
  };
  run(prompts);  // prefill: eager
  for (int k = 0; k < 6; ++k, ++steps) {
    std::vector<std::vector<int32_t>> next;
    for (size_t i = 0; i < ids.size(); ++i) next.push_back({tok(rng)});
    run(next);  // decode: graphs, the NCCL calls captured in them
  }
  EXPECT_EQ(mismatched, 0);
  EXPECT_EQ(tp.num_graph_steps(), steps);
  EXPECT_EQ(comm->failure(), "");
}

TEST(CudaNccl, GatherPlacesColumnsAndRefusesHostTensors) {
  auto cuda = make_cuda_backend(0);
  std::unique_ptr<Communicator> comm = nccl_group_of_one(*cuda);
  if (!comm) GTEST_SKIP() << "no NCCL";
  std::vector<float> v(15);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i) * 0.5f;
  Tensor x = cuda->upload(HostTensor{{3, 5}, v});
  Tensor out = cuda->alloc({3, 5}, x.dtype());
  comm->all_gather(x, out);
  comm->all_reduce_sum(x);  // one rank: unchanged
  EXPECT_EQ(cuda->to_host_f32(out), v);
  EXPECT_EQ(cuda->to_host_f32(x), v);
  Tensor host = Tensor::empty_host({3, 5}, DType::F32);
  EXPECT_THROW(comm->all_reduce_sum(host), Error);
  Tensor wrong = cuda->alloc({3, 4}, x.dtype());
  EXPECT_THROW(comm->all_gather(x, wrong), Error);
}

}  // namespace
}  // namespace nc::testing

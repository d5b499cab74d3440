// Tensor parallelism with ranks that meet over TCP (engine/tp_step_model.h's processes, here
// threads of the test so that the sanitizers see both ends): rank 0's engine and ranks 1..3 run
// by run_tensor_parallel_worker, as `nanocascade --tp-rank` runs them. The same greedy tokens as
// the thread group's, with preemption; every worker returns once the engine is gone; a worker
// that leaves mid-run stops the engine's next step with an error naming it.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "core/error.h"
#include "dist/socket_group.h"
#include "dist/tcp_link.h"
#include "engine/step_model.h"
#include "engine/tp_step_model.h"
#include "fake_model.h"
#include "golden.h"
#include "nanocascade/engine.h"

namespace nc {
namespace {

std::string free_address() {
  TcpListener probe(HostPort{"127.0.0.1", 0});
  return fmt::format("127.0.0.1:{}", probe.port());
}

std::unique_ptr<Engine> engine_over(std::unique_ptr<StepModel> model, int pages) {
  EngineConfig cfg;
  cfg.page_size = 4;
  cfg.max_num_batched_tokens = 24;
  cfg.kv_cache_memory = std::to_string(model->kv_bytes_per_page(4) * pages);
  return std::make_unique<Engine>(cfg, std::move(model), std::make_unique<fake::FakeCodec>());
}

std::vector<std::vector<int32_t>> prompts(int n) {
  std::mt19937 rng(9);
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> p(size_t(1 + rng() % 30));
    for (int32_t& t : p) t = int32_t(rng() % 512);
    out.push_back(p);
  }
  return out;
}

SamplingParams greedy(int tokens) {
  SamplingParams sp;
  sp.temperature = 0;
  sp.max_tokens = tokens;
  sp.ignore_eos = true;
  return sp;
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
  const std::string path = testing::fixtures_dir() + "/tiny-llama";
  const auto ps = prompts(10);
  StepModelOptions threads;
  threads.tensor_parallel_size = 4;
  const auto want =
      engine_over(make_llama_step_model(path, threads), 256)->generate(ps, greedy(12));
  StepModelOptions sockets = threads;
  sockets.dist_init_addr = free_address();
  Workers workers(path, sockets, 4);
  {
    auto e = engine_over(make_llama_step_model(path, sockets), 14);  // some requests must wait
    const auto got = e->generate(ps, greedy(12));
    for (size_t i = 0; i < ps.size(); ++i)
      EXPECT_EQ(got[i].token_ids, want[i].token_ids) << "prompt " << i;
    EXPECT_GT(e->stats().num_preemptions, 0);
    EXPECT_EQ(e->health_error(), "");
  }  // the engine's model stops the workers
  workers.join();
  for (const std::string& err : workers.errors) EXPECT_EQ(err, "");
}

TEST(TensorParallelSockets, AWorkerThatLeavesStopsTheEngineNamingIt) {
  const std::string path = testing::fixtures_dir() + "/tiny-llama";
  StepModelOptions o;
  o.tensor_parallel_size = 2;
  o.dist_init_addr = free_address();
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
  auto e = engine_over(make_llama_step_model(path, o), 64);
  leaver.join();
  try {
    e->generate(prompts(2), greedy(4));
    FAIL() << "a step ran without rank 1";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("rank 1"), std::string::npos) << err.what();
  }
  EXPECT_NE(e->health_error().find("rank 1"), std::string::npos) << e->health_error();
}

}  // namespace
}  // namespace nc

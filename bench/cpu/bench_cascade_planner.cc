// The cascade planner's host time per step, on the shape of the shared-prefix serving workload
// (docs/benchmarks.md, "Cascade end to end"): `groups` system prompts of `prefix` tokens, each
// shared by requests that also hold `own` private tokens, all decoding (one new token each).
#include <benchmark/benchmark.h>

#include <numeric>

#include "kv/cascade_planner.h"

namespace nc {
namespace {

constexpr int kPageSize = 16;

std::vector<CascadeRequest> decode_batch(int batch, int groups, int prefix, int own) {
  std::vector<CascadeRequest> reqs(batch);
  const int prefix_pages = prefix / kPageSize;
  int32_t next_page = int32_t(groups * prefix_pages);
  for (int r = 0; r < batch; ++r) {
    CascadeRequest& q = reqs[r];
    q.q_len = 1;
    q.kv_len = prefix + own;
    const int g = r * groups / batch;  // requests of a group are contiguous, as in the engine
    q.pages.resize(prefix_pages);
    std::iota(q.pages.begin(), q.pages.end(), int32_t(g * prefix_pages));
    while (int(q.pages.size()) * kPageSize < q.kv_len) q.pages.push_back(next_page++);
  }
  return reqs;
}

void BM_PlanDecode(benchmark::State& state, CascadeMode mode) {
  const int batch = int(state.range(0)), groups = int(state.range(1));
  const auto reqs = decode_batch(batch, groups, 2048, 300);
  CascadeCostModel cost;
  cost.kv_bytes_per_token = 2 * 8 * 128 * 2;  // Qwen3-0.6B: 8 KV heads, head_dim 128, bf16
  cost.flops_per_row_token = 4 * 16 * 128;
  const CascadePlanner planner(kPageSize, mode, cost);
  int levels = 0;
  for (auto _ : state) {
    const CascadePlan plan = planner.plan(reqs);
    levels = plan.stats.num_levels;
    benchmark::DoNotOptimize(plan.step.levels.data());
  }
  state.counters["levels"] = levels;
  state.counters["pages"] = double(batch) * reqs[0].pages.size();
}

BENCHMARK_CAPTURE(BM_PlanDecode, off, CascadeMode::Off)
    ->Args({512, 32})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_PlanDecode, auto, CascadeMode::Auto) -> Args({8, 1}) -> Args({64, 4})
    -> Args({256, 16}) -> Args({512, 32}) -> Args({512, 512}) -> Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace nc

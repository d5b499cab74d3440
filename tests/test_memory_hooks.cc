// Memory hooks (nanocascade/memory_hooks.h) over the fake model: the per-step deltas reconcile
// with the page counts after every step and sum to the pool's totals, through a random workload
// with shared prefixes (prefix-cache hits and eviction), a pool small enough to preempt, and
// aborts; a hook that throws is removed without disturbing the step or the other hooks.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <stdexcept>

#include "core/error.h"
#include "fake_model.h"
#include "nanocascade/engine.h"
#include "nanocascade/memory_hooks.h"

namespace nc {
namespace {

constexpr int kVocab = 300;

std::unique_ptr<Engine> small_engine(int page_size, int pages, bool async) {
  EngineConfig cfg;
  cfg.page_size = page_size;
  cfg.max_num_batched_tokens = 48;
  cfg.max_num_seqs = 16;
  cfg.kv_cache_memory = std::to_string(int64_t(pages) * page_size * 8);  // 8 bytes per slot
  cfg.async_scheduling = async;
  return std::make_unique<Engine>(cfg, std::make_unique<fake::FakeModel>(kVocab, 4096, async),
                                  std::make_unique<fake::FakeCodec>());
}

// Checks each event against the previous one and keeps the sums of the deltas.
struct Recorder : MemoryHook {
  std::vector<MemoryStepEvent> events;
  PageTransitions sum;
  void on_step(const MemoryStepEvent& ev) override {
    const PageStateCounts before = events.empty()
                                       ? PageStateCounts{ev.pages.total, ev.pages.total, 0, 0}
                                       : events.back().pages;
    const PageTransitions& d = ev.delta;
    EXPECT_EQ(ev.pages.free, before.free - d.allocated + d.freed + d.evicted - d.restored)
        << "step " << ev.step;
    EXPECT_EQ(ev.pages.used, before.used + d.allocated - d.freed - d.cached + d.reloaded)
        << "step " << ev.step;
    EXPECT_EQ(ev.pages.cached, before.cached + d.cached - d.evicted - d.reloaded + d.restored)
        << "step " << ev.step;
    EXPECT_EQ(d.restored, 0);  // no host tier here (tests/test_engine_host_tier.cc has one)
    EXPECT_EQ(ev.pages.free + ev.pages.used + ev.pages.cached, ev.pages.total);
    if (!events.empty()) {
      EXPECT_EQ(ev.step, events.back().step + 1);
    }
    sum.allocated += d.allocated, sum.freed += d.freed, sum.cached += d.cached;
    sum.evicted += d.evicted, sum.reloaded += d.reloaded;
    events.push_back(ev);
  }
};

struct Thrower : MemoryHook {
  int calls = 0;
  void on_step(const MemoryStepEvent&) override {
    ++calls;
    throw std::runtime_error("profiler disk full");
  }
};

// 60 requests, half behind one of two shared system prompts; aborts at steps 3 and 9. Returns
// the number of step() calls.
int run_workload(Engine& e, uint32_t seed, std::set<RequestId>& finished) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> systems(2, std::vector<int32_t>(40));
  for (auto& s : systems)
    for (int32_t& t : s) t = int32_t(rng() % 256);
  std::vector<RequestId> ids;
  for (int i = 0; i < 60; ++i) {
    std::vector<int32_t> prompt = i % 2 ? systems[size_t(i / 2) % 2] : std::vector<int32_t>{};
    for (int k = 1 + int(rng() % 30); k > 0; --k) prompt.push_back(int32_t(rng() % 256));
    SamplingParams p;
    p.temperature = i % 3 == 0 ? 0.0f : 0.8f;
    p.seed = uint64_t(i);
    p.max_tokens = 1 + int(rng() % 40);
    p.ignore_eos = true;
    ids.push_back(e.add_request(prompt, p));
  }
  int step = 0;
  for (; e.has_unfinished(); ++step) {
    if (step == 3 || step == 9)
      for (int k = 0; k < 4; ++k) e.abort(ids[rng() % ids.size()]);
    for (const RequestOutput& o : e.step())
      if (o.finished) finished.insert(o.id);
  }
  return step;
}

class MemoryHooks : public ::testing::TestWithParam<bool> {};

TEST_P(MemoryHooks, DeltasReconcileWithThePoolThroughPreemptionAbortsAndEviction) {
  auto e = small_engine(4, 48, GetParam());
  auto rec = std::make_shared<Recorder>();
  e->add_memory_hook(rec);
  std::set<RequestId> finished;
  const int steps = run_workload(*e, 7, finished);
  EXPECT_EQ(finished.size(), 60u);
  EXPECT_EQ(int(rec->events.size()), steps);  // one event per step() call
  ASSERT_FALSE(rec->events.empty());
  const MemoryStepEvent& last = rec->events.back();
  const PageTransitions& t = last.total;
  EXPECT_EQ(rec->sum.allocated, t.allocated);
  EXPECT_EQ(rec->sum.freed, t.freed);
  EXPECT_EQ(rec->sum.cached, t.cached);
  EXPECT_EQ(rec->sum.evicted, t.evicted);
  EXPECT_EQ(rec->sum.reloaded, t.reloaded);
  // The workload exercised every transition, preemption included.
  const EngineStats st = e->stats();
  EXPECT_GT(st.num_preemptions, 0);
  EXPECT_GT(t.allocated, 0);
  EXPECT_GT(t.freed, 0);
  EXPECT_GT(t.cached, 0);
  EXPECT_GT(t.evicted, 0);
  EXPECT_GT(t.reloaded, 0);
  // The last event agrees with the engine's own stats and describes the fixed memory.
  EXPECT_EQ(last.pages.total, st.total_pages);
  EXPECT_EQ(last.pages.free, st.free_pages);
  EXPECT_EQ(last.pages.used, st.used_pages);
  EXPECT_EQ(last.pages.cached, st.cached_pages);
  EXPECT_EQ(last.kv_cache_bytes, st.kv_cache_bytes);
  EXPECT_EQ(last.page_bytes * last.pages.total, st.kv_cache_bytes);
  EXPECT_EQ(last.page_size, 4);
  // The same totals reach the stats (and /metrics: nanocascade_kv_page_transitions_total).
  EXPECT_EQ(st.cache.pages_allocated, t.allocated);
  EXPECT_EQ(st.cache.pages_freed, t.freed);
  EXPECT_EQ(st.cache.pages_cached, t.cached);
  EXPECT_EQ(st.cache.pages_evicted, t.evicted);
  EXPECT_EQ(st.cache.pages_reloaded, t.reloaded);
  EXPECT_TRUE(last.requests.empty());
  // Mid-run events list running requests with their pages, within the pool.
  bool saw_requests = false;
  for (const MemoryStepEvent& ev : rec->events) {
    int sum = 0;
    for (const RequestPages& r : ev.requests) {
      EXPECT_TRUE(r.id >= 0 && r.id < 60) << r.id;
      sum += r.pages;
    }
    saw_requests |= !ev.requests.empty();
    // Shared pages count once per request, so only the used pages bound the distinct ones.
    if (!ev.requests.empty()) {
      EXPECT_GT(ev.pages.used, 0) << "step " << ev.step;
    }
    EXPECT_GE(sum, 0);
    if (!ev.pages_per_level.empty()) {
      EXPECT_EQ(ev.pages_per_level.size(), 1u);  // no cascade on the CPU unless forced
    }
  }
  EXPECT_TRUE(saw_requests);
}

TEST_P(MemoryHooks, AThrowingHookIsRemovedAndTheEngineGoesOn) {
  auto quiet = small_engine(4, 48, GetParam());
  std::set<RequestId> want;
  run_workload(*quiet, 11, want);

  auto e = small_engine(4, 48, GetParam());
  auto thrower = std::make_shared<Thrower>();
  auto rec = std::make_shared<Recorder>();
  e->add_memory_hook(thrower);
  e->add_memory_hook(rec);
  std::set<RequestId> got;
  testing::internal::CaptureStderr();
  const int steps = run_workload(*e, 11, got);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(thrower->calls, 1);  // removed after its first failure
  EXPECT_NE(err.find("profiler disk full"), std::string::npos) << err;
  EXPECT_EQ(got, want);
  EXPECT_EQ(int(rec->events.size()), steps);
  EXPECT_EQ(rec->events.front().step, 0);  // the next hook still saw the first step
  EXPECT_EQ(rec->sum.allocated, rec->events.back().total.allocated);
}

TEST(MemoryHooksApi, RejectsANullHook) {
  auto e = small_engine(4, 48, false);
  EXPECT_THROW(e->add_memory_hook(nullptr), Error);
}

INSTANTIATE_TEST_SUITE_P(Sampling, MemoryHooks, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "async" : "host";
                         });

}  // namespace
}  // namespace nc

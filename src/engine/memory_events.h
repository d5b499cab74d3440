// MemoryHookList: the engine's registered MemoryHooks (nanocascade/memory_hooks.h) and the
// MemoryStepEvent it builds for them once per Engine::step() call.
//
// The event's deltas are the page pool's transition counters minus those of the previous event,
// so they add up, event after event, to the pool's totals: nothing is sampled or estimated. A hook
// that throws is dropped (its message goes to stderr once) and the others still run: a profiler's
// failure must not stop serving.
#pragma once
#include <chrono>
#include <memory>
#include <vector>

#include "engine/scheduler.h"
#include "engine/step_model.h"
#include "kv/host_tier.h"
#include "kv/page_pool.h"
#include "nanocascade/memory_hooks.h"

namespace nc {

// What the engine knows besides the pool when it builds an event.
struct MemoryEventSources {
  const PagePool& pool;
  const Scheduler& sched;
  const StepModel& model;
  const std::vector<int>& pages_per_level;  // CacheStats::last_step_pages_per_level
  int page_size = 0;
  int64_t page_bytes = 0;
  int64_t kv_cache_bytes = 0;
  const HostTier* host = nullptr;  // the prefix cache's host tier, or null
};

PageTransitions to_transitions(const PagePoolCounters& c, const HostTier* host = nullptr);
PageTransitions operator-(const PageTransitions& a, const PageTransitions& b);

class MemoryHookList {
 public:
  MemoryHookList() : start_(std::chrono::steady_clock::now()) {}

  void add(std::shared_ptr<MemoryHook> hook);
  bool empty() const { return hooks_.empty(); }
  // Builds the step's event and calls every hook with it (nothing when none is registered).
  void emit(const MemoryEventSources& src);

  // The event emit() would build now (it advances the step and the delta base).
  MemoryStepEvent build(const MemoryEventSources& src);

 private:
  std::vector<std::shared_ptr<MemoryHook>> hooks_;
  std::chrono::steady_clock::time_point start_;
  int64_t step_ = 0;
  PageTransitions seen_;  // the pool's totals at the previous event
};

}  // namespace nc

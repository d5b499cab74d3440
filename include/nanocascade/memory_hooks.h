// Memory profiling hooks: what the KV cache did in each engine step, for the engine's users.
//
// A MemoryHook registered with Engine::add_memory_hook is called once per Engine::step() call,
// after the step's bookkeeping, with a MemoryStepEvent: the pages in each state now, the page
// transitions since the previous event (and since the start), the page entries of each cascade
// level the step read, the fixed memory (weights, workspace, KV cache) and each running
// request's page count. Every device page is in exactly one state (Free, Used, Cached) and every
// change of state is one of six transitions, so the deltas reconcile exactly with the counts:
//
//   free   = free_before   - allocated + freed + evicted - restored
//   used   = used_before   + allocated - freed - cached + reloaded
//   cached = cached_before + cached    - evicted - reloaded + restored
//
// With the prefix cache's host tier (EngineConfig::host_kv_cache), a host page is free or used
// (holding a cached page's K/V), and
//
//   host.used = host.used_before + offloaded - restored - dropped
//
// A hook runs on the thread that calls step(); it must not call back into the Engine. A hook that
// throws is removed from the engine (its error goes to stderr once); the step and the other hooks
// are unaffected. The cost with no hook registered is nothing beyond a few counter increments in
// the page pool; with one, building the event (one pass over the running requests).
#pragma once
#include <cstdint>
#include <vector>

namespace nc {

// Page transitions, counted by the page pool (each page changes state through exactly one).
struct PageTransitions {
  int64_t allocated = 0;  // Free -> Used (a new page for a request)
  int64_t freed = 0;      // Used -> Free (the last reference dropped; the cache does not hold it)
  int64_t cached = 0;     // Used -> Cached (the last reference dropped; the prefix cache keeps it)
  int64_t evicted = 0;    // Cached -> Free (the prefix cache gave it back)
  int64_t reloaded = 0;   // Cached -> Used (a prefix-cache hit took a reference again)
  int64_t restored = 0;   // Free -> Cached, K/V copied back from a host page (host: used -> free)
  // The host tier: of the evicted pages, those whose K/V went to a host page (host: free -> used),
  // and host pages whose K/V was discarded (host: used -> free; LRU, the tier full).
  int64_t offloaded = 0;
  int64_t dropped = 0;
};

struct HostPageCounts {
  int total = 0;  // 0: no host tier
  int used = 0;
};

struct PageStateCounts {
  int total = 0;
  int free = 0;
  int used = 0;
  int cached = 0;
};

struct RequestPages {
  int64_t id = 0;  // the RequestId
  int pages = 0;   // KV pages the request references now
};

struct MemoryStepEvent {
  int64_t step = 0;   // 0, 1, 2, ...: the Engine::step() call this event ends
  double time_s = 0;  // seconds since the engine was made
  int page_size = 0;  // tokens per page
  int64_t page_bytes = 0;
  PageStateCounts pages;  // now
  HostPageCounts host;    // the host tier now
  PageTransitions delta;  // since the previous event (or since the engine was made)
  PageTransitions total;  // since the engine was made
  // Page entries of each attention level of the last step planned (cascade levels first, the
  // requests' own level last); one level without cascade; empty before the first step.
  std::vector<int> pages_per_level;
  int64_t weight_bytes = 0;
  int64_t workspace_bytes = 0;
  int64_t kv_cache_bytes = 0;
  std::vector<RequestPages> requests;  // running requests, in admission order
};

class MemoryHook {
 public:
  virtual ~MemoryHook() = default;
  virtual void on_step(const MemoryStepEvent& event) = 0;
};

}  // namespace nc

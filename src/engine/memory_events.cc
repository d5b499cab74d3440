#include "engine/memory_events.h"

#include <cstdio>
#include <exception>

#include "core/error.h"
#include "engine/sequence.h"

namespace nc {

PageTransitions to_transitions(const PagePoolCounters& c, const HostTier* host) {
  PageTransitions t{c.allocated, c.freed, c.cached, c.evicted, c.reloaded, c.restored};
  if (host) {
    t.offloaded = host->counters().offloaded;
    t.dropped = host->counters().dropped;
  }
  return t;
}

PageTransitions operator-(const PageTransitions& a, const PageTransitions& b) {
  return {a.allocated - b.allocated, a.freed - b.freed,       a.cached - b.cached,
          a.evicted - b.evicted,     a.reloaded - b.reloaded, a.restored - b.restored,
          a.offloaded - b.offloaded, a.dropped - b.dropped};
}

void MemoryHookList::add(std::shared_ptr<MemoryHook> hook) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, hook != nullptr, "engine: memory hook is null");
  hooks_.push_back(std::move(hook));
}

MemoryStepEvent MemoryHookList::build(const MemoryEventSources& src) {
  MemoryStepEvent ev;
  ev.step = step_++;
  ev.time_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  ev.page_size = src.page_size;
  ev.page_bytes = src.page_bytes;
  const PagePoolStats ps = src.pool.stats();
  ev.pages = {ps.total, ps.free, ps.used, ps.cached};
  if (src.host) ev.host = {src.host->num_pages(), src.host->num_held()};
  ev.total = to_transitions(src.pool.counters(), src.host);
  ev.delta = ev.total - seen_;
  seen_ = ev.total;
  ev.pages_per_level = src.pages_per_level;
  const ModelMemory mem = src.model.memory();
  ev.weight_bytes = mem.weight_bytes;
  ev.workspace_bytes = mem.workspace_bytes;
  ev.kv_cache_bytes = src.kv_cache_bytes;
  ev.requests.reserve(src.sched.running().size());
  for (const Sequence* s : src.sched.running())
    ev.requests.push_back({s->id, int(s->pages.size())});
  return ev;
}

void MemoryHookList::emit(const MemoryEventSources& src) {
  if (hooks_.empty()) {
    ++step_;  // steps count whether or not anyone listens; deltas cover the unseen ones
    return;
  }
  const MemoryStepEvent ev = build(src);
  for (size_t i = 0; i < hooks_.size();) {
    try {
      hooks_[i]->on_step(ev);
      ++i;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "nanocascade: memory hook failed at step %lld and was removed: %s\n",
                   static_cast<long long>(ev.step), e.what());
      hooks_.erase(hooks_.begin() + std::ptrdiff_t(i));
    } catch (...) {
      std::fprintf(stderr, "nanocascade: memory hook failed at step %lld and was removed\n",
                   static_cast<long long>(ev.step));
      hooks_.erase(hooks_.begin() + std::ptrdiff_t(i));
    }
  }
}

}  // namespace nc

// Continuous batching with chunked prefill under a token budget, FCFS, with preemption by
// recompute when the page pool runs short.
//
// Each step: running requests that decode get 1 token each (admission order); then running
// requests with an unfinished (chunked) prefill get chunks of at most long_prefill_chunk tokens;
// then waiting requests are admitted in arrival order while budget, max_num_seqs and free pages
// allow (each also starting with at most long_prefill_chunk tokens); whatever budget is left
// then tops the prefills up, in admission order. So a 128k-token prompt computed in chunks never
// takes the whole step: decodes run every step, short requests that arrive meanwhile are
// admitted (and get their first token) in the next step, and a prompt alone still gets the
// whole budget. A request that needs a page
// the pool cannot give preempts the most recently admitted running request (possibly itself):
// its pages are freed and it goes back to the FRONT of the waiting queue, to be recomputed from
// its prompt and generated tokens. The earliest admitted request always progresses, and
// admission refuses requests that could not fit alone, so nothing deadlocks or is dropped.
//
// With a prefix cache, a waiting request whose prompt shares more full pages with the prompt of
// a running request still in prefill than the cache holds now waits for that prefill (its pages
// enter the cache at commit) instead of computing and holding a copy of its own; the requests
// behind it may be admitted meanwhile. Requests sent together with one system prompt then
// compute it once (SGLang calls this in-batch prefix caching).
//
// With a streaming window (engine/streaming_window.h) every running request first drops the pages
// between its sinks and its window before it is given tokens (the shifts of its kept pages go
// with the step), and a chunk never takes its positions past the window's max_len. Page counts
// and fits are in cache tokens (Sequence::kv_len), which is num_computed without a window.
#pragma once
#include <cstdint>
#include <deque>
#include <vector>

#include "engine/sequence.h"
#include "engine/streaming_window.h"
#include "kv/page_pool.h"
#include "kv/page_shift.h"

namespace nc {

struct SchedulerConfig {
  int page_size = 16;
  int max_num_batched_tokens = 2048;
  int max_num_seqs = 256;
  // Tokens a prefill gets before waiting requests are admitted (the rest of the budget tops
  // it up afterwards); 0: a quarter of max_num_batched_tokens (at least 1).
  int long_prefill_chunk = 0;
  // A waiting request waits for a running prefill that will put at least this many more of
  // its prompt tokens (whole pages) in the prefix cache; 0: never wait.
  int wait_for_shared_prefix_tokens = 32;
};

// Hook for the prefix cache (engine/prefix_cache.h): at admission it may attach cached pages
// holding a prefix of the request's tokens (taking references) and return how many tokens they
// hold; at finish, abort and preemption it may cache the request's computed full pages (it may
// swap a page for the cache's identical copy, keeping one reference per entry of seq.pages),
// before the scheduler drops the request's references.
class PrefixCache {
 public:
  virtual ~PrefixCache() = default;
  virtual int match(Sequence& seq) = 0;
  // Tokens match() would attach now, without taking references or counting a lookup.
  virtual int peek(const Sequence& seq) const = 0;
  virtual void insert(Sequence& seq) = 0;
};

struct ScheduledSeq {
  Sequence* seq = nullptr;
  int num_new = 0;  // tokens computed this step: those after seq->num_computed
};

struct ScheduleResult {
  std::vector<ScheduledSeq> scheduled;  // decodes first, then prefill chunks
  std::vector<Sequence*> preempted;     // preempted during this schedule() call
  // Streaming window: kept pages whose keys move to new positions before the step's pass.
  std::vector<KVPageShift> kv_shifts;
  int num_tokens = 0;
  bool empty() const { return scheduled.empty(); }
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, PagePool& pool);

  const SchedulerConfig& config() const { return cfg_; }
  // Pages needed to hold n tokens (cache tokens).
  int pages_for(int n) const {  // in 64 bits: n may be INT32_MAX - 1 (an endless stream)
    return int((int64_t(n) + cfg_.page_size - 1) / cfg_.page_size);
  }

  // Queues a request (status Waiting). Throws nc::Error when it could not fit in the whole pool
  // even alone (max_kv_tokens, or with a streaming window its decode bound, needs more pages than
  // the pool has).
  void add(Sequence* seq);
  // Plans the next step and allocates its pages.
  ScheduleResult schedule();
  // After the model ran the step: the scheduled tokens are now in the KV cache.
  void commit(const ScheduleResult& result);
  // Removes a request (finished or aborted) wherever it is and frees its pages.
  void finish(Sequence* seq);

  bool has_work() const { return !running_.empty() || !waiting_.empty(); }
  int num_running() const { return int(running_.size()); }
  const std::vector<Sequence*>& running() const { return running_; }  // in admission order
  int num_waiting() const { return int(waiting_.size()); }
  int64_t num_preemptions() const { return num_preemptions_; }
  void set_prefix_cache(PrefixCache* cache) { prefix_cache_ = cache; }
  // The streaming window (null: none); it must outlive the scheduler.
  void set_streaming_window(StreamingWindow* window) { window_ = window; }
  // The most pages one request held at once since the start (any request, window or not).
  int peak_request_pages() const { return peak_request_pages_; }

  // Pool invariants plus: the pages of live requests are exactly the used pages, each
  // referenced once per holder; a request holds just the pages its computed tokens need.
  void check_invariants() const;

 private:
  bool grow(Sequence* s, int num_new);  // pages for kv_len + num_new tokens
  int max_new_tokens_fitting(const Sequence* s) const;
  void schedule_tokens(Sequence* s, int n, int& budget);
  int prefill_chunk() const;  // long_prefill_chunk resolved
  // The budget left after admission goes to the running prefills, in admission order.
  void top_up_prefills(int& budget);
  // Preempts the most recently admitted running request; returns it.
  Sequence* preempt_last(int& budget, ScheduleResult& result);
  // Removes the shifts of s's pages from the step (s is preempted: its pages go).
  void drop_shifts_of(const Sequence& s, ScheduleResult& result);
  // Gives `s` up to `want` tokens, preempting later requests when no page is left; returns
  // false when `s` itself was preempted.
  bool schedule_running(Sequence* s, int want, int& budget, ScheduleResult& result);
  void admit_waiting(int& budget);
  // Whether waiting request `s` should wait for one of `prefilling` (see the top comment).
  // Records in s->waits_for the request it waits for.
  bool waits_for_shared_prefill(Sequence* s, const std::vector<const Sequence*>& prefilling) const;

  SchedulerConfig cfg_;
  PagePool& pool_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // in admission order
  int64_t next_admit_ = 0;
  int64_t num_preemptions_ = 0;
  PrefixCache* prefix_cache_ = nullptr;
  StreamingWindow* window_ = nullptr;
  int peak_request_pages_ = 0;
};

}  // namespace nc

#include "engine/scheduler.h"

#include <algorithm>
#include <unordered_map>

#include "core/error.h"

namespace nc {

Scheduler::Scheduler(const SchedulerConfig& config, PagePool& pool) : cfg_(config), pool_(pool) {
  NC_CHECK(cfg_.page_size >= 1 && cfg_.page_size <= 256, "page size {} outside 1..256",
           cfg_.page_size);
  NC_CHECK(cfg_.max_num_batched_tokens >= 1, "max_num_batched_tokens must be >= 1, got {}",
           cfg_.max_num_batched_tokens);
  NC_CHECK(cfg_.max_num_seqs >= 1, "max_num_seqs must be >= 1, got {}", cfg_.max_num_seqs);
  NC_CHECK(cfg_.long_prefill_chunk >= 0, "long_prefill_chunk must be >= 0, got {}",
           cfg_.long_prefill_chunk);
}

int Scheduler::prefill_chunk() const {
  if (cfg_.long_prefill_chunk > 0) return cfg_.long_prefill_chunk;
  return std::max(1, cfg_.max_num_batched_tokens / 4);
}

void Scheduler::add(Sequence* seq) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, seq->num_tokens() >= 1, "request {}: empty prompt",
              seq->id);
  int need = pages_for(std::max(seq->max_kv_tokens, seq->num_tokens()));
  // A streaming request makes progress in sinks + window + 1 pages (chunks fit what is left).
  if (window_) need = std::min(need, window_->max_decode_pages());
  NC_CHECK_AS(
      ErrorKind::InvalidArgument, need <= pool_.num_pages(),
      "request {}: needs {} KV pages ({} tokens at page size {}) but the whole KV cache has "
      "{} pages; lower max_tokens or raise --kv-cache-memory",
      seq->id, need, seq->max_kv_tokens, cfg_.page_size, pool_.num_pages());
  seq->status = SeqStatus::Waiting;
  seq->num_scheduled = 0;
  waiting_.push_back(seq);
}

bool Scheduler::grow(Sequence* s, int num_new) {
  const int need = pages_for(s->kv_len() + num_new) - int(s->pages.size());
  return need <= 0 || pool_.allocate(need, s->pages);
}

int Scheduler::max_new_tokens_fitting(const Sequence* s) const {
  const int64_t slots = int64_t(s->pages.size() + pool_.num_available()) * cfg_.page_size;
  return int(std::min<int64_t>(slots - s->kv_len(), s->remaining()));
}

void Scheduler::schedule_tokens(Sequence* s, int n, int& budget) {
  // A top-up adds to what s already got in this step.
  NC_CHECK(grow(s, s->num_scheduled + n),
           "scheduler: page allocation failed after the fit check (request {})", s->id);
  s->num_scheduled += n;
  budget -= n;
  peak_request_pages_ = std::max(peak_request_pages_, int(s->pages.size()));
}

Sequence* Scheduler::preempt_last(int& budget, ScheduleResult& result) {
  Sequence* v = running_.back();
  running_.pop_back();
  budget += v->num_scheduled;  // undo what it got earlier in this step
  v->num_scheduled = 0;
  if (prefix_cache_) prefix_cache_->insert(*v);  // its computed pages stay cached for the retry
  drop_shifts_of(*v, result);
  if (window_) {
    // What its next step would drop goes now: the recompute then runs exactly the tokens that
    // step would have seen, and no chunk of it crosses an eviction.
    std::vector<KVPageShift> unused;  // its pages go
    window_->evict(*v, pool_, unused);
  }
  pool_.dec_ref_all(v->pages);
  v->pages.clear();
  // Recomputed from prompt + generated tokens when readmitted; with a streaming window only the
  // tokens still in its cache (num_evicted stays: streaming_window.h).
  v->num_computed = v->num_evicted;
  v->status = SeqStatus::Waiting;
  ++v->num_preemptions;
  ++num_preemptions_;
  waiting_.push_front(v);
  result.preempted.push_back(v);
  return v;
}

void Scheduler::drop_shifts_of(const Sequence& s, ScheduleResult& result) {
  // Only a streaming request's own pages after its sinks are shifted: no one else holds them.
  std::erase_if(result.kv_shifts, [&](const KVPageShift& k) {
    return std::find(s.pages.begin(), s.pages.end(), k.page) != s.pages.end();
  });
}

bool Scheduler::schedule_running(Sequence* s, int want, int& budget, ScheduleResult& result) {
  if (window_) {  // the pages between its sinks and its window go first
    window_->evict(*s, pool_, result.kv_shifts);
    want = std::min(want, window_->max_new_tokens(*s));
  }
  for (;;) {
    const int fit = max_new_tokens_fitting(s);
    if (fit >= 1) {
      schedule_tokens(s, std::min(want, fit), budget);
      return true;
    }
    if (preempt_last(budget, result) == s) return false;
  }
}

namespace {

// Tokens at the start of a's and b's token lists that agree.
int common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b, int limit) {
  const int n = std::min({int(a.size()), int(b.size()), limit});
  return int(std::mismatch(a.begin(), a.begin() + n, b.begin()).first - a.begin());
}

}  // namespace

bool Scheduler::waits_for_shared_prefill(Sequence* s,
                                         const std::vector<const Sequence*>& prefilling) const {
  const int ps = cfg_.page_size, need = cfg_.wait_for_shared_prefix_tokens;
  if (!prefix_cache_ || need <= 0 || prefilling.empty() || s->prompt_logits) return false;
  // Still waiting for the same prefill: it only puts more of the shared prefix in the cache, so
  // s keeps waiting without comparing its tokens again (a long shared prompt prefilled in
  // chunks would otherwise cost every waiting sharer a full comparison per step).
  for (const Sequence* p : prefilling)
    if (p->id == s->waits_for) return true;
  s->waits_for = -1;
  // What the cache could give s at most: whole pages, the last token always computed.
  int limit = (s->num_tokens() - 1) / ps * ps;
  if (s->share_limit >= 0) limit = std::min(limit, s->share_limit);
  int best = 0;
  int64_t best_id = -1;
  for (const Sequence* p : prefilling) {
    // Only p's prompt enters the cache at commit (Scheduler::commit), at most its share limit.
    const int cached =
        p->share_limit >= 0 ? std::min(p->num_prompt, p->share_limit) : p->num_prompt;
    const int shared = common_prefix(s->tokens, p->tokens, std::min(limit, cached)) / ps * ps;
    if (shared > best) best = shared, best_id = p->id;
  }
  if (best < need || best - prefix_cache_->peek(*s) < need) return false;
  s->waits_for = best_id;
  return true;
}

void Scheduler::admit_waiting(int& budget) {
  // Running requests whose prompt is not computed yet (their prefill runs this step or later).
  std::vector<const Sequence*> prefilling;
  for (const Sequence* s : running_)
    if (s->num_computed < s->num_prompt) prefilling.push_back(s);
  // Requests that wait for a sharer's prefill keep their place; a bounded number are skipped
  // per step so that a long queue costs little.
  size_t i = 0;
  const size_t max_skipped = size_t(4) * cfg_.max_num_seqs;
  while (i < waiting_.size() && i <= max_skipped && budget > 0 &&
         int(running_.size()) < cfg_.max_num_seqs) {
    Sequence* s = waiting_[i];
    // A preempted request whose last token is still being sampled (a placeholder, asynchronous
    // scheduling) is recomputed once the token is known; FCFS keeps the others behind it.
    if (s->tokens.back() < 0) break;
    if (waits_for_shared_prefill(s, prefilling)) {
      ++i;
      continue;
    }
    // The prefix cache attaches the pages of the longest cached prefix: only the rest is
    // computed.
    // (A request that wants its prompt's logits computes all of it.)
    if (prefix_cache_ && !s->prompt_logits)
      s->num_computed = s->num_evicted + prefix_cache_->match(*s);
    int fit = max_new_tokens_fitting(s);
    if (window_) fit = std::min(fit, window_->max_new_tokens(*s));
    if (fit < 1) {  // FCFS: nobody overtakes a request that does not fit
      // A waiting request holds no pages (they stay evictable for the running ones).
      pool_.dec_ref_all(s->pages);
      s->pages.clear();
      s->num_computed = s->num_evicted;
      break;
    }
    waiting_.erase(waiting_.begin() + std::ptrdiff_t(i));
    s->status = SeqStatus::Running;
    s->admit_order = next_admit_++;
    running_.push_back(s);
    schedule_tokens(s, std::min({s->remaining(), budget, fit, prefill_chunk()}), budget);
    if (s->num_computed < s->num_prompt) prefilling.push_back(s);
  }
}

void Scheduler::top_up_prefills(int& budget) {
  for (Sequence* s : running_) {
    if (budget <= 0) return;
    // A prefill that got its chunk this step (a decode has remaining() == 1); only free pages
    // are used here, nobody is preempted for a top-up.
    if (s->num_scheduled == 0 || s->remaining() <= 1) continue;
    int extra = std::min(
        {s->remaining() - s->num_scheduled, budget, max_new_tokens_fitting(s) - s->num_scheduled});
    // A stream's chunk also stays below the window's position limit (it counts what s has).
    if (window_) extra = std::min(extra, window_->max_new_tokens(*s));
    if (extra > 0) schedule_tokens(s, extra, budget);
  }
}

ScheduleResult Scheduler::schedule() {
  ScheduleResult result;
  for (Sequence* s : running_) s->num_scheduled = 0;
  int budget = cfg_.max_num_batched_tokens;
  // Decodes first: one token each, in admission order.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence* s = running_[i];
    // Never past max_kv_tokens: with asynchronous scheduling the last token may be known to be
    // the last (max_tokens) before it is sampled.
    if (s->remaining() == 1 && s->num_scheduled == 0 && s->num_computed < s->max_kv_tokens)
      schedule_running(s, 1, budget, result);
  }
  // Then running requests whose (chunked) prefill is unfinished, a chunk each, so that a long
  // prompt leaves budget for the requests that wait.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence* s = running_[i];
    if (s->remaining() > 1 && s->num_scheduled == 0) {
      schedule_running(s, std::min({s->remaining(), budget, prefill_chunk()}), budget, result);
    }
  }
  // Then new (or preempted) requests, first come first served.
  admit_waiting(budget);
  top_up_prefills(budget);

  for (int pass = 0; pass < 2; ++pass) {
    for (Sequence* s : running_) {
      if (s->num_scheduled == 0) continue;
      const bool decode = s->remaining() == 1;
      if (decode == (pass == 0)) {
        result.scheduled.push_back({s, s->num_scheduled});
        result.num_tokens += s->num_scheduled;
      }
    }
  }
  return result;
}

void Scheduler::commit(const ScheduleResult& result) {
  for (const ScheduledSeq& e : result.scheduled) {
    NC_CHECK(e.seq->status == SeqStatus::Running && e.seq->num_scheduled == e.num_new,
             "scheduler: commit of request {} that is no longer scheduled", e.seq->id);
    const bool prefilling = e.seq->num_computed < e.seq->num_prompt;
    e.seq->num_computed += e.num_new;
    e.seq->num_scheduled = 0;
    // Cache a prompt's full pages as soon as they are computed, not only when the request
    // finishes: requests admitted meanwhile with the same prefix (a shared system prompt) then
    // reuse them instead of computing and holding copies of their own.
    if (prefix_cache_ && prefilling) prefix_cache_->insert(*e.seq);
  }
}

void Scheduler::finish(Sequence* seq) {
  if (seq->status == SeqStatus::Finished) return;
  auto it = std::find(running_.begin(), running_.end(), seq);
  if (it != running_.end()) {
    running_.erase(it);
  } else {
    auto wt = std::find(waiting_.begin(), waiting_.end(), seq);
    if (wt != waiting_.end()) waiting_.erase(wt);
  }
  if (prefix_cache_) prefix_cache_->insert(*seq);
  pool_.dec_ref_all(seq->pages);
  seq->pages.clear();
  seq->num_scheduled = 0;
  seq->status = SeqStatus::Finished;
}

void Scheduler::check_invariants() const {
  pool_.check_invariants();
  std::unordered_map<int32_t, int> refs;
  auto count = [&](const Sequence* s) {
    for (int32_t p : s->pages) ++refs[p];
  };
  for (const Sequence* s : running_) {
    NC_CHECK(s->status == SeqStatus::Running, "scheduler: request {} in running has status {}",
             s->id, int(s->status));
    NC_CHECK(int(s->pages.size()) == pages_for(s->kv_len() + s->num_scheduled),
             "scheduler: request {} holds {} pages for {} tokens", s->id, s->pages.size(),
             s->kv_len() + s->num_scheduled);
    count(s);
  }
  for (const Sequence* s : waiting_) {
    NC_CHECK(s->status == SeqStatus::Waiting, "scheduler: request {} in waiting has status {}",
             s->id, int(s->status));
    count(s);
  }
  // Every reference belongs to a live request (the prefix cache holds its pages through the
  // pool's cache flag, not a reference).
  for (const auto& [page, n] : refs) {
    NC_CHECK(pool_.refcount(page) == n, "scheduler: page {} has refcount {} but {} live holders",
             page, pool_.refcount(page), n);
  }
  NC_CHECK(int(refs.size()) == pool_.num_used(),
           "scheduler: live requests hold {} pages, the pool counts {} used", refs.size(),
           pool_.num_used());
}

}  // namespace nc

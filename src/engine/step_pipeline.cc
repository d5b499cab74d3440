// StepPipeline (engine/step_pipeline.h): launching steps on the model, the step in flight, and
// completing steps into their requests' tokens.
#include "engine/step_pipeline.h"

#include <chrono>
#include <exception>
#include <mutex>

#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/prefix_cache.h"

namespace nc {
namespace {

double seconds_since(EngineClock::time_point t0) {
  return std::chrono::duration<double>(EngineClock::now() - t0).count();
}

}  // namespace

std::span<float> StepPipeline::row_logits(LaunchedStep& s, size_t row) const {
  return {s.logits.data() + row * size_t(vocab_), size_t(vocab_)};
}

StepPipeline::StepPipeline(const StepPipelineParts& parts)
    : cfg_(parts.cfg),
      model_(parts.model),
      sched_(parts.sched),
      planner_(parts.planner),
      requests_(parts.requests),
      acct_(parts.accounting),
      host_tier_(parts.host_tier),
      vocab_(parts.model.vocab_size()) {}

std::optional<int64_t> StepPipeline::in_flight_serial() const {
  if (!in_flight_) return std::nullopt;
  return in_flight_->serial;
}

StepsToComplete StepPipeline::launch_next() {
  StepsToComplete steps;
  steps.next = launch();
  // A grammar row's bitmask waits for step n's tokens (complete()); any other draw is queued now,
  // right behind its pass.
  if (steps.next && !(steps.next->structured && in_flight_)) {
    try {
      finish_launch(*steps.next);
    } catch (...) {
      abort_requests_of(*steps.next);  // the step in flight stays (top comment)
      throw;
    }
  }
  steps.done = std::move(in_flight_);
  if (steps.next && steps.done) acct_.count_overlapped_step();
  if (steps.next && steps.next->drawn && goes_in_flight(*steps.next))
    in_flight_ = std::move(steps.next);
  return steps;
}

bool StepPipeline::goes_in_flight(const LaunchedStep& s) const {
  return s.device && cfg_.async_scheduling;
}

bool StepPipeline::has_grammar_row(const StepPlan& plan) {
  for (size_t k = 0; k < plan.sample_entries.size(); ++k)
    if (request_of_row(plan, k).grammar) return true;
  return false;
}

// Rows are filled in parallel on the process's thread pool: each row's matcher is its own and
// the compiled grammar is read-only, so the masks do not depend on the split. One row's fill
// costs tens of microseconds on a 150k vocabulary, which, for a batch of a hundred rows, is
// longer than a small model's forward pass (H100, 2026-12-05: 6.5 ms of masks a step against
// 4.3 ms of device time on one thread).
void StepPipeline::fill_bitmasks(LaunchedStep& s) {
  std::vector<Request*> rows;
  for (size_t k = 0; k < s.plan.sample_entries.size(); ++k) {
    Request& r = request_of_row(s.plan, k);
    if (!r.grammar) continue;
    // Finished while the step before ran (its grammar may have terminated): this row's token
    // is dropped, so any token will do.
    if (r.finished) {
      r.token_bitmask.clear();
      continue;
    }
    rows.push_back(&r);
  }
  if (rows.size() < 2) {
    for (Request* r : rows) fill_token_bitmask(*r, vocab_);
    return;
  }
  // The pool's threads must not throw: the first failure is kept and rethrown here.
  std::mutex mu;
  std::exception_ptr failure;
  ThreadPool::global().parallel_for(int64_t(rows.size()), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      try {
        fill_token_bitmask(*rows[size_t(i)], vocab_);
      } catch (...) {
        const std::lock_guard<std::mutex> lock(mu);
        if (!failure) failure = std::current_exception();
      }
    }
  });
  if (failure) std::rethrow_exception(failure);
}

void StepPipeline::finish_launch(LaunchedStep& s) {
  const auto t0 = EngineClock::now();
  if (s.structured) fill_bitmasks(s);
  const auto t1 = EngineClock::now();
  acct_.add_sample_time(std::chrono::duration<double>(t1 - t0).count());
  const StepPlan& plan = s.plan;
  const size_t num_rows = plan.sample_entries.size();
  if (s.device) {
    // Only token ids come back: the host never sees the logits.
    std::vector<RowSampling> rows;
    for (size_t k = 0; k < num_rows; ++k) rows.push_back(row_sampling(request_of_row(plan, k)));
    s.ids = model_.sample_async(*s.pass, rows);
  } else {
    s.logits = model_.take_logits(*s.pass);
    const size_t logit_rows = num_rows + plan.prompt_rows.size();
    NC_CHECK(s.logits.size() == logit_rows * size_t(vocab_),
             "engine: model returned {} logits for {} rows of {}", s.logits.size(), logit_rows,
             vocab_);
  }
  s.pass.reset();
  s.drawn = true;
  acct_.add_model_time(seconds_since(t1));
}

void StepPipeline::complete(StepsToComplete& steps) {
  LaunchedStep* current = nullptr;
  try {
    for (LaunchedStep* s : {steps.done.get(), steps.next.get()}) {
      if (!s) continue;
      current = s;
      // A step that waited for the one before (a grammar row): its bitmasks, then its draw.
      if (!s->drawn) finish_launch(*s);
      if (s == steps.next.get() && goes_in_flight(*s)) {
        in_flight_ = std::move(steps.next);
        break;
      }
      complete_step(*s);
      acct_.charge(*s->kind);
    }
  } catch (...) {
    // The failing step's tokens are lost, and those of a step launched behind it that did not go
    // into flight (synchronous, or its draw waited for them): their requests cannot go on. They
    // finish as aborted (pages freed); the error propagates.
    abort_requests_of(*current);
    if (current == steps.done.get() && steps.next) abort_requests_of(*steps.next);
    throw;
  }
  // The first step of a run completed nothing: the time so far goes to the step in flight.
  if (!steps.done && !steps.next && in_flight_) acct_.charge(*in_flight_->kind);
}

std::unique_ptr<LaunchedStep> StepPipeline::launch() {
  NC_CHECK_AS(ErrorKind::Internal, kv_failure_.empty(),
              "engine: {}; the prefix cache may name pages whose K/V never arrived, so no step "
              "runs any more (restart the engine)",
              kv_failure_);
  const auto t0 = EngineClock::now();
  const ScheduleResult sr = sched_.schedule();
  try {
    return launch_scheduled(sr, t0);
  } catch (...) {
    // schedule() has acted (pages taken, a streaming window's pages dropped with their key
    // shifts handed to this pass): the step cannot be retried as it stands. Its requests finish
    // as aborted (pages freed), as when a step's tokens never arrive; the error propagates.
    for (const ScheduledSeq& e : sr.scheduled)
      if (Request* r = requests_.find(e.seq->id)) requests_.finish(*r, FinishReason::Abort);
    throw;
  }
}

std::unique_ptr<LaunchedStep> StepPipeline::launch_scheduled(const ScheduleResult& sr,
                                                             EngineClock::time_point t0) {
  // The host tier's copies decided while scheduling (offloads of evicted pages, restores of hit
  // ones) go before the step's forward pass, in order; on CUDA the device orders them.
  if (host_tier_ && host_tier_->has_copies()) {
    try {
      model_.transfer_kv(host_tier_->take_copies());
    } catch (const std::exception& e) {
      // The tree already points at the copies' targets (offloaded nodes at host pages, restored
      // ones at device pages) whose bytes never came: a later hit would read stale K/V as its
      // prefix. No step runs after this (launch), rather than one that serves wrong text.
      kv_failure_ = fmt::format("a host-tier KV page copy failed: {}", e.what());
      throw;
    }
  }
  if (sr.empty()) return nullptr;
  auto s = std::make_unique<LaunchedStep>();
  s->serial = next_serial_++;
  s->plan = build_step_plan(sr, cfg_.page_size);
  // Prompt rows (prompt logprobs) keep the plain plan: cascade reorders only sampled rows.
  if (planner_ && s->plan.prompt_rows.empty())
    acct_.record_cascade(apply_cascade(s->plan, *planner_));
  // Sparse attention: each own-level entry's budget, in the plan's (possibly reordered) order.
  if (model_.sparse_enabled())
    for (const StepEntry& e : s->plan.entries)
      s->plan.input.sparse_budgets.push_back(requests_.at(e.seq->id).sparse_budget);
  s->device = s->plan.prompt_rows.empty() && device_sampling_applies(s->plan);
  s->structured = has_grammar_row(s->plan);
  acct_.add_schedule_time(seconds_since(t0));
  const auto t1 = EngineClock::now();
  s->pass = model_.forward_async(s->plan.input);
  acct_.add_model_time(seconds_since(t1));
  sched_.commit(sr);
  s->kind = &acct_.count_launched(s->plan);
  for (const StepEntry& e : s->plan.entries) requests_.at(e.seq->id).last_step = s->serial;
  place_tokens(*s);
  return s;
}

void StepPipeline::place_tokens(LaunchedStep& s) {
  // Sampled tokens that the next schedule() must already see: placeholders -1 - row, which the
  // model resolves on the device (ForwardInput::token_ids) and complete_step() on the host.
  const bool deferred = goes_in_flight(s);
  const StepPlan& plan = s.plan;
  for (size_t k = 0; k < plan.sample_entries.size(); ++k) {
    Sequence& seq = *plan.entries[size_t(plan.sample_entries[k])].seq;
    s.token_index.push_back(deferred ? seq.num_tokens() : -1);
    if (deferred) seq.tokens.push_back(-1 - int32_t(k));
  }
}

std::vector<int32_t> StepPipeline::take_device_tokens(LaunchedStep& s) {
  std::vector<int32_t> toks = s.ids->wait();
  NC_CHECK(toks.size() == s.plan.sample_entries.size(),
           "engine: model sampled {} tokens for {} rows", toks.size(),
           s.plan.sample_entries.size());
  acct_.count_device_sampled(int64_t(toks.size()));
  s.row_logprobs = s.ids->logprobs();
  NC_CHECK(s.row_logprobs.empty() || s.row_logprobs.size() == toks.size(),
           "engine: model gave log-probabilities for {} of {} rows", s.row_logprobs.size(),
           toks.size());
  return toks;
}

void StepPipeline::complete_step(LaunchedStep& s) {
  const auto t0 = EngineClock::now();
  const StepPlan& plan = s.plan;
  const std::vector<int32_t> toks = s.ids ? take_device_tokens(s) : std::vector<int32_t>{};
  const auto t1 = EngineClock::now();
  acct_.add_model_time(std::chrono::duration<double>(t1 - t0).count());
  const bool device_sampling = device_sampling_on();
  // Before the sampled tokens: a token may finish its request (max_tokens 1).
  record_prompt_rows(s);
  for (size_t k = 0; k < plan.sample_entries.size(); ++k) {
    Request& r = request_of_row(plan, k);
    // Finished (a stop, an abort) while this step ran: its token is dropped.
    if (r.finished) continue;
    const int32_t tok = s.ids ? toks[k] : host_token(s, k, r, device_sampling);
    NC_CHECK(tok >= 0 && tok < vocab_, "engine: sampled token {} outside the vocabulary", tok);
    if (s.ids && r.params.logprobs >= 0) {
      NC_CHECK(!s.row_logprobs.empty() && s.row_logprobs[k].token == tok,
               "engine: the model gave no log-probabilities for request {}", r.seq.id);
      r.new_logprobs.push_back(to_token_logprob(s.row_logprobs[k]));
    }
    int index = s.token_index[k];
    if (index < 0) {
      index = r.seq.num_tokens();
      r.seq.tokens.push_back(tok);
    } else {
      NC_CHECK(index < r.seq.num_tokens() && r.seq.tokens[size_t(index)] == -1 - int32_t(k),
               "engine: request {} lost the placeholder of its token {}", r.seq.id, index);
      r.seq.tokens[size_t(index)] = tok;
    }
    acct_.count_generated_token();
    requests_.on_token(r, index, EngineClock::now());
  }
  acct_.add_sample_time(seconds_since(t1));
}

int32_t StepPipeline::host_token(LaunchedStep& s, size_t k, Request& r, bool device_sampling) {
  const std::span<float> row = row_logits(s, k);
  if (r.params.logprobs < 0) return host_sample(row, r, device_sampling);
  // Log-probabilities of the raw logits: host_sample changes the row (bias, penalties).
  const std::vector<float> raw(row.begin(), row.end());
  const int32_t tok = host_sample(row, r, device_sampling);
  if (tok >= 0 && tok < vocab_)
    r.new_logprobs.push_back(to_token_logprob(row_logprobs(raw, tok, r.params.logprobs)));
  return tok;
}

void StepPipeline::record_prompt_rows(LaunchedStep& s) {
  const StepPlan& plan = s.plan;
  for (size_t i = 0; i < plan.prompt_rows.size(); ++i) {
    const PromptRow& pr = plan.prompt_rows[i];
    Request* r = requests_.find(plan.entries[size_t(pr.entry)].seq->id);
    if (!r || r->finished) continue;
    record_prompt_logprob(*r, pr.position, row_logits(s, plan.sample_entries.size() + i));
  }
}

void StepPipeline::drop_in_flight() {
  if (!in_flight_) return;
  abort_requests_of(*in_flight_);
  in_flight_.reset();
}

void StepPipeline::abort_requests_of(const LaunchedStep& s) {
  for (const StepEntry& e : s.plan.entries) {
    if (Request* r = requests_.find(e.seq->id)) requests_.finish(*r, FinishReason::Abort);
  }
}

bool StepPipeline::device_sampling_on() const {
  return cfg_.device_sampling && model_.can_sample_on_device();
}

bool StepPipeline::device_sampling_applies(const StepPlan& plan) const {
  if (plan.sample_entries.empty()) return false;
  const bool device_sampling = device_sampling_on();
  for (int e : plan.sample_entries)
    if (!draws_like_device(requests_.at(plan.entries[size_t(e)].seq->id), device_sampling))
      return false;
  return true;
}

Request& StepPipeline::request_of_row(const StepPlan& plan, size_t row) {
  return requests_.at(plan.entries[size_t(plan.sample_entries[row])].seq->id);
}

}  // namespace nc

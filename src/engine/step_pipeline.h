// StepPipeline: launches the engine's steps on the model and completes them, with at most one
// step in flight between Engine::step() calls (asynchronous scheduling, docs/gpu.md).
//
// One Engine::step() call is launch_next() then complete():
//   - launch_next() schedules, plans and queues step n + 1's forward pass (up to its logits,
//     StepModel::forward_async) BEFORE step n's tokens are taken (with device sampling the
//     device then runs it while the host does step n's bookkeeping and plans step n + 2), and
//     takes step n out of flight. Unless step n + 1 must wait for step n (below), its draw is
//     queued right behind its pass (finish_launch: sample_async, or take_logits for the host
//     sampler).
//   - complete() takes step n's tokens (waiting for them), finishes step n + 1's launch when it
//     waited, and then takes step n + 1's tokens unless it goes into flight: it does when its
//     tokens are sampled by the model and asynchronous scheduling is on (with its draw queued:
//     in launch_next(), or in complete() when it waited). A step that needs the
//     host sampler completes in the call that launched it.
//
// Structured output: a grammar row's token bitmask is filled on the host between its step's
// pass and its draw, so that its host time hides behind the pass. The bitmask needs the row's
// previous token accepted by its matcher; when a step with a grammar row launches while step n
// is in flight, the order is: forward pass n + 1 queued (its input names step n's tokens by
// placeholder) -> step n's tokens taken and accepted (complete) -> bitmasks of n + 1 filled
// (while the device runs pass n + 1) -> draw n + 1 queued; step n + 1 then goes into flight like
// any other. Rows of requests that finished meanwhile get no bitmask (their tokens are dropped).
//
// Placeholder rules (asynchronous scheduling): a step that goes into flight appends a
// placeholder -1 - row to each sampled request's tokens at launch, so the next schedule() plans
// with it; the model resolves it on the device (ForwardInput::token_ids) and complete() writes
// the token over it. A request that finished while its step ran drops the step's token.
//
// Error recovery across two steps: when taking a step's tokens fails, those tokens are lost and
// so are those of a step launched behind it that is not in flight (a synchronous one, or one
// whose draw waited for them); the requests of both
// finish as aborted (pages freed, placeholders cut) and the error propagates. When queueing a
// step's draw fails in launch_next(), its requests finish as aborted and the step already in
// flight stays there; its tokens find the aborted requests finished and are dropped.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/request.h"
#include "engine/scheduler.h"
#include "engine/step_accounting.h"
#include "engine/step_model.h"
#include "engine/step_plan.h"
#include "kv/cascade_planner.h"
#include "nanocascade/engine.h"

namespace nc {

// A step the model has been given: its plan and, until the pipeline takes them, its tokens.
struct LaunchedStep {
  int64_t serial = 0;
  StepPlan plan;
  std::unique_ptr<QueuedPass> pass;       // the forward pass until its draw is queued
  bool device = false;                    // its tokens are drawn by the model (sample_async)
  bool drawn = false;                     // its draw is queued (or its host logits taken)
  std::unique_ptr<PendingTokens> ids;     // sampled by the model (device sampling)
  std::vector<RowLogprobs> row_logprobs;  // with ids: per row, for the rows that asked
  // Else [logit rows, vocab] for the host sampler: the sampled rows, then the prompt rows.
  std::vector<float> logits;
  // Per logit row: where its token goes in the request's tokens (a placeholder the scheduler
  // already planned with), or -1: appended when it arrives.
  std::vector<int> token_index;
  EngineStats::StepKind* kind = nullptr;  // the accounting's kind of the step
  // A sampled row has a grammar: its bitmask is filled before the draw, once the row's previous
  // token was accepted (see the top comment).
  bool structured = false;
};

// The steps one Engine::step() call completes: the one that was in flight (step n) and the one
// it launched (step n + 1, unless that went into flight). Either may be null.
struct StepsToComplete {
  std::unique_ptr<LaunchedStep> done;
  std::unique_ptr<LaunchedStep> next;
};

// What the pipeline works with; all must outlive it.
struct StepPipelineParts {
  const EngineConfig& cfg;
  StepModel& model;
  Scheduler& sched;
  const CascadePlanner* planner;  // null: no cascade
  RequestTable& requests;
  StepAccounting& accounting;
  HostTier* host_tier = nullptr;  // the prefix cache's host tier; null: none
};

class StepPipeline {
 public:
  explicit StepPipeline(const StepPipelineParts& parts);

  // Launches the next step (none when nothing is scheduled) and takes the step in flight out of
  // flight; the launched step goes into flight when asynchronous (see the top comment).
  StepsToComplete launch_next();
  // Completes the steps (in launch order), charging each to its kind; on an error aborts the
  // requests of the failed step and of a step behind it, and rethrows.
  void complete(StepsToComplete& steps);

  bool has_in_flight() const { return in_flight_ != nullptr; }
  // Why no step runs any more ("" while steps run): a host-tier copy failed, so the prefix tree
  // names pages whose K/V never arrived (Engine::health_error reports it).
  const std::string& kv_failure() const { return kv_failure_; }
  // Aborts the requests of the step in flight and forgets it (its tokens never arrive).
  void drop_in_flight();
  // The step in flight's serial (requests it names must stay); nullopt when none.
  std::optional<int64_t> in_flight_serial() const;

 private:
  // Schedules a step and launches it; a launch that fails aborts the scheduled requests.
  std::unique_ptr<LaunchedStep> launch();
  std::unique_ptr<LaunchedStep> launch_scheduled(const ScheduleResult& sr,
                                                 EngineClock::time_point t0);
  // Fills the bitmasks of the step's grammar rows, then queues its draw (device sampling) or
  // takes its host logits.
  void finish_launch(LaunchedStep& s);
  // Appends the placeholders of a step going into flight, or marks its rows "append".
  void place_tokens(LaunchedStep& s);
  // Fills the token bitmasks of the step's grammar rows (none for finished requests).
  void fill_bitmasks(LaunchedStep& s);
  bool has_grammar_row(const StepPlan& plan);
  bool goes_in_flight(const LaunchedStep& s) const;
  void complete_step(LaunchedStep& s);
  // The host sampler's token for row k (with its log-probabilities when r asks).
  int32_t host_token(LaunchedStep& s, size_t k, Request& r, bool device_sampling);
  void record_prompt_rows(LaunchedStep& s);
  std::vector<int32_t> take_device_tokens(LaunchedStep& s);
  void abort_requests_of(const LaunchedStep& s);
  bool device_sampling_on() const;
  bool device_sampling_applies(const StepPlan& plan) const;
  Request& request_of_row(const StepPlan& plan, size_t row);
  std::span<float> row_logits(LaunchedStep& s, size_t row) const;  // host logits of a row

  const EngineConfig& cfg_;
  StepModel& model_;
  Scheduler& sched_;
  const CascadePlanner* planner_;
  RequestTable& requests_;
  StepAccounting& acct_;
  HostTier* host_tier_;
  int vocab_ = 0;
  int64_t next_serial_ = 0;
  // The step whose tokens are still on their way (asynchronous scheduling).
  std::unique_ptr<LaunchedStep> in_flight_;
  std::string kv_failure_;
};

}  // namespace nc

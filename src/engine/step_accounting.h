// StepAccounting: the engine's per-step statistics (EngineStats), kept in one place.
//
// Times: scheduling + plan building (schedule_s), the model's forward and the wait for device
// tokens (model_s), sampling + token bookkeeping (sample_s). Each step also counts in its kind
// (decode-only or with prefill) when it is launched: steps, tokens, KV tokens its attention
// reads, causal (query, key) pairs. When a step completes, it is charged the device time and the
// model's host-preparation time that passed since the last charge, and the wall time since the
// last charge or the start of the Engine::step() call: with asynchronous scheduling a call
// completes the step launched by the previous call, so the walls of all calls add up to the
// engine's wall time and each piece goes to the kind of the step that completed in it.
//
// Invariant: every EngineStats field it touches only grows (last-step cascade figures aside).
#pragma once
#include <chrono>
#include <cstdint>

#include "engine/step_model.h"
#include "engine/step_plan.h"
#include "kv/cascade_planner.h"
#include "nanocascade/engine.h"

namespace nc {

class StepAccounting {
 public:
  // Both must outlive it; `model` gives the running device and host-preparation totals.
  StepAccounting(EngineStats& stats, StepModel& model) : st_(stats), model_(model) {}

  // An Engine::step() call starts: its wall time counts from now.
  void begin_call();
  void add_schedule_time(double s) { st_.schedule_s += s; }
  void add_model_time(double s) { st_.model_s += s; }
  void add_sample_time(double s) { st_.sample_s += s; }
  // A step went to the model: counts the step, its prefill tokens, and the step in its kind.
  // Returns that kind (what charge() is later given for the step).
  EngineStats::StepKind& count_launched(const StepPlan& plan);
  // The cascade planner's figures for the step being planned.
  void record_cascade(const CascadeStats& cs);
  void count_overlapped_step() { ++st_.num_overlapped_steps; }
  void count_device_sampled(int64_t n) { st_.num_device_sampled += n; }
  void count_generated_token() { ++st_.num_generated_tokens; }
  // Charges the device, host-preparation and wall time since the last charge (or begin_call)
  // to `kind`.
  void charge(EngineStats::StepKind& kind);

 private:
  EngineStats& st_;
  StepModel& model_;
  double device_s_seen_ = 0;  // the model's device seconds at the last charge
  double prep_s_seen_ = 0;    // the model's host-preparation seconds at the last charge
  std::chrono::steady_clock::time_point mark_;  // where the wall time to charge next starts
};

}  // namespace nc

// StepAccounting (engine/step_accounting.h): counts and times of the engine's steps.
#include "engine/step_accounting.h"

#include <algorithm>

namespace nc {

void StepAccounting::begin_call() {
  mark_ = std::chrono::steady_clock::now();
}

EngineStats::StepKind& StepAccounting::count_launched(const StepPlan& plan) {
  ++st_.num_steps;
  st_.num_prompt_tokens_computed += plan.num_prefill_tokens;
  EngineStats::StepKind& k = plan.num_prefill_tokens ? st_.prefill_steps : st_.decode_steps;
  ++k.steps;
  k.tokens += plan.num_prefill_tokens + plan.num_decode_tokens;
  for (const StepEntry& e : plan.entries) {
    const int64_t n = e.num_new;
    k.kv_tokens += e.start + n;
    k.attn_pairs += n * e.start + n * (n + 1) / 2;
  }
  return k;
}

void StepAccounting::record_cascade(const CascadeStats& cs) {
  CacheStats& c = st_.cache;
  c.last_step_pages_per_level = cs.pages_per_level;
  c.last_step_kv_bytes_plain = cs.kv_bytes_plain;
  c.last_step_kv_bytes_cascade = cs.kv_bytes_cascade;
  c.kv_bytes_plain += cs.kv_bytes_plain;
  c.kv_bytes_cascade += cs.kv_bytes_cascade;
  c.cascade_steps += cs.num_levels > 1;
  c.max_levels = std::max(c.max_levels, cs.num_levels);
}

void StepAccounting::charge(EngineStats::StepKind& kind) {
  const ModelTimings t = model_.timings();
  kind.device_s += t.device_s - device_s_seen_;
  kind.model_prep_s += t.host_prep_s - prep_s_seen_;
  device_s_seen_ = t.device_s;
  prep_s_seen_ = t.host_prep_s;
  const auto now = std::chrono::steady_clock::now();
  kind.wall_s += std::chrono::duration<double>(now - mark_).count();
  mark_ = now;
}

}  // namespace nc

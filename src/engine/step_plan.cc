#include "engine/step_plan.h"

#include "core/error.h"

namespace nc {

StepPlan build_step_plan(const ScheduleResult& schedule, int page_size) {
  StepPlan plan;
  ForwardInput& in = plan.input;
  in.token_ids.reserve(schedule.num_tokens);
  in.positions.reserve(schedule.num_tokens);
  PagedKVBatch batch;
  batch.causal = true;
  for (const ScheduledSeq& s : schedule.scheduled) {
    const Sequence& seq = *s.seq;
    StepEntry e;
    e.seq = s.seq;
    e.start = seq.num_computed;
    e.num_new = s.num_new;
    e.sample = seq.num_computed + s.num_new == seq.num_tokens();
    NC_CHECK(e.num_new >= 1 && e.start + e.num_new <= seq.num_tokens(),
             "step plan: request {} schedules tokens [{}, {}) of {}", seq.id, e.start,
             e.start + e.num_new, seq.num_tokens());
    for (int i = 0; i < e.num_new; ++i) {
      in.token_ids.push_back(seq.tokens[e.start + i]);
      in.positions.push_back(e.start + i);
    }
    batch.add(e.num_new, seq.pages, e.start + e.num_new, page_size);
    if (e.sample) {
      in.logit_rows.push_back(int32_t(in.token_ids.size()) - 1);
      plan.sample_entries.push_back(int(plan.entries.size()));
    }
    (e.start >= seq.num_prompt && e.num_new == 1 ? plan.num_decode_tokens
                                                 : plan.num_prefill_tokens) += e.num_new;
    plan.entries.push_back(e);
  }
  in.attention.num_tokens = int(in.token_ids.size());
  in.attention.levels.push_back(std::move(batch));
  return plan;
}

}  // namespace nc

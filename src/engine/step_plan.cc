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
  std::vector<int32_t> prompt_token_rows;
  for (const ScheduledSeq& s : schedule.scheduled) {
    const Sequence& seq = *s.seq;
    StepEntry e;
    e.seq = s.seq;
    e.start = seq.kv_len();
    e.num_new = s.num_new;
    e.sample = seq.num_computed + s.num_new == seq.num_tokens();
    NC_CHECK(e.num_new >= 1 && seq.num_computed + e.num_new <= seq.num_tokens(),
             "step plan: request {} schedules tokens [{}, {}) of {}", seq.id, seq.num_computed,
             seq.num_computed + e.num_new, seq.num_tokens());
    for (int i = 0; i < e.num_new; ++i) {
      const int pos = e.start + i, index = seq.token_index(pos);  // differ after an eviction
      if (seq.prompt_logits && index + 1 < seq.num_prompt) {
        plan.prompt_rows.push_back({int(plan.entries.size()), index});
        prompt_token_rows.push_back(int32_t(in.token_ids.size()));
      }
      in.token_ids.push_back(seq.tokens[size_t(index)]);
      in.positions.push_back(pos);
    }
    batch.add(e.num_new, seq.pages, e.start + e.num_new, page_size);
    if (e.sample) {
      in.logit_rows.push_back(int32_t(in.token_ids.size()) - 1);
      plan.sample_entries.push_back(int(plan.entries.size()));
    }
    (seq.num_computed >= seq.num_prompt && e.num_new == 1 ? plan.num_decode_tokens
                                                          : plan.num_prefill_tokens) += e.num_new;
    plan.entries.push_back(e);
  }
  in.logit_rows.insert(in.logit_rows.end(), prompt_token_rows.begin(), prompt_token_rows.end());
  in.kv_shifts = schedule.kv_shifts;
  in.attention.num_tokens = int(in.token_ids.size());
  in.attention.levels.push_back(std::move(batch));
  return plan;
}

}  // namespace nc

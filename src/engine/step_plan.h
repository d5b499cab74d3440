// The plan of one step, as plain host data: which requests, their new tokens and positions, and
// the model's ForwardInput (token ids, positions, the attention's page tables, logit rows).
#pragma once
#include <vector>

#include "engine/scheduler.h"
#include "model/llama.h"

namespace nc {

struct StepEntry {
  Sequence* seq = nullptr;
  int start = 0;        // first new token's position (= tokens in its KV cache, Sequence::kv_len)
  int num_new = 0;      // new tokens this step
  bool sample = false;  // all its tokens are computed after this step: sample the next one
};

// A prompt position whose logits are returned (Sequence::prompt_logits): its row predicts the
// prompt token at position + 1 (`position` indexes the prompt; after a streaming window's
// eviction it is not the row's cache position).
struct PromptRow {
  int entry = 0;
  int position = 0;
};

struct StepPlan {
  std::vector<StepEntry> entries;   // in the scheduler's order (decodes first)
  std::vector<int> sample_entries;  // entry index of each sampled logit row, in logit order
  // Logit rows after the sampled ones (logit row sample_entries.size() + i is prompt_rows[i]).
  // A plan with prompt rows runs without cascade and with host logits.
  std::vector<PromptRow> prompt_rows;
  int num_prefill_tokens = 0;
  int num_decode_tokens = 0;
  ForwardInput input;
};

// Builds the plan from a schedule (pages already allocated; the schedule's kv_shifts go with
// it). Attention has one level: a causal paged batch over each request's full page list with
// kv_len = cache tokens + new tokens. (Cascade levels over shared prefixes would be added in
// front of it.)
StepPlan build_step_plan(const ScheduleResult& schedule, int page_size);

}  // namespace nc

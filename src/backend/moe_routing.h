// Mixture-of-experts routing: which experts each token goes to, and with what weight.
//
// From router logits [T, E] (float32, x . W_gate^T) each token independently gets top_k
// (expert id, weight) slots, in slot order of decreasing choice score (ties to the lower expert
// id). The routing modes of the families served (docs/models.md, "Mixture of experts"):
//   - Softmax, one group: softmax over the E logits, the top_k probabilities, divided by their
//     sum when `renormalize` (Qwen3-MoE / Qwen2-MoE norm_topk_prob; DeepSeek-V2 "greedy").
//   - Softmax with groups (DeepSeek-V2 "group_limited_greedy"): the E experts form n_group equal
//     groups of consecutive ids; a group's score is its best probability; only the topk_group
//     best groups are eligible, and top_k is taken among their experts.
//   - Sigmoid (DeepSeek-V3 "noaux_tc"): scores s = sigmoid(logit); experts are chosen by
//     s + bias (the e_score_correction_bias), groups ranked by the sum of their two best biased
//     scores; the weights are the chosen experts' un-biased s, divided by (their sum + 1e-20) when
//     `renormalize`.
// Every mode then multiplies the weights by `scaling` (routed_scaling_factor; 1 for Qwen).
// Arithmetic is float32, as the Hugging Face modules compute it. A token's slots depend on its
// logits only (batch invariance).
#pragma once
#include <cstdint>

namespace nc {

enum class MoeScoring { Softmax, Sigmoid };

struct MoeRouting {
  int num_experts = 0;  // E
  int top_k = 0;
  MoeScoring scoring = MoeScoring::Softmax;
  int n_group = 1;     // groups of E / n_group consecutive experts
  int topk_group = 1;  // groups eligible per token
  bool renormalize = false;
  float scaling = 1.0f;
  bool has_bias() const { return scoring == MoeScoring::Sigmoid; }
  // nc::Error (InvalidArgument, or Unsupported for a combination no family uses) naming the bad
  // field: E or top_k < 1, top_k > E, groups not dividing E, topk_group outside [1, n_group],
  // fewer eligible experts than top_k, a non-finite or non-positive scaling.
  void validate() const;
};

// The reference routing of T tokens: logits [T, E] row-major; bias [E] (Sigmoid only; may be
// null for a zero bias); ids and weights [T, top_k] row-major.
void route_tokens(const float* logits, int64_t T, const float* bias, const MoeRouting& r,
                  int32_t* ids, float* weights);

}  // namespace nc

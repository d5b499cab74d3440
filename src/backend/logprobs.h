// Log-probabilities of tokens, as the OpenAI API returns them (logprobs, top_logprobs, echo).
//
// Contract: row_logprobs() takes one row of float32 logits as the model produced them (before
// logit_bias, temperature, penalties and the top-k/top-p/min-p filters: the raw distribution,
// as vLLM returns by default) and gives the log-softmax value of `token` and of the k most likely
// ids, most likely first (ties: lower id first). The log-softmax is taken in float32 from the
// row's maximum (x - max - log(sum exp(x - max)), the sum accumulated in double), so it equals a
// float32 log_softmax of the same logits to rounding. -inf logits give -inf. The backends'
// sample_tokens_async (rows with RowSampling::logprobs >= 0) and the engine's host sampler both
// call it, so every path returns the same numbers.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace nc {

struct RowLogprobs {
  int32_t token = -1;               // the token whose log-probability this is
  float logprob = 0;                // of `token`
  std::vector<int32_t> top_ids;     // the k most likely ids, most likely first
  std::vector<float> top_logprobs;  // their log-probabilities
};

// The largest k a request may ask for (OpenAI's top_logprobs limit).
inline constexpr int kMaxLogprobs = 20;

// Throws nc::Error when k is outside [0, kMaxLogprobs] or token outside the row.
RowLogprobs row_logprobs(std::span<const float> logits, int32_t token, int k);

}  // namespace nc

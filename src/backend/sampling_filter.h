// The candidate set of a sampling step: temperature, top-k, top-p and min-p over one row of
// logits; and the token bitmask of structured output applied to one row. The engine's host sampler
// (engine/sampling.h) and the backends' default sample_tokens draw from it, so the CPU and CUDA
// samplers agree with the engine's.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace nc {

struct CandidateFilter {
  float temperature = 1.0f;  // > 0
  int top_k = -1;            // <= 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
};

// The candidates left after temperature, top-k, top-p and min-p, by decreasing probability
// (ties: lower id first), with their renormalised probabilities. top-k keeps the k most likely;
// top-p keeps the shortest such prefix whose probability reaches top_p (at least one token);
// min-p then drops tokens below min_p times the most likely one's probability.
struct Candidates {
  std::vector<int32_t> ids;
  std::vector<double> probs;
};
Candidates filter_candidates(std::span<const float> logits, const CandidateFilter& p);

// Structured output's token bitmask (xgrammar's layout): bit (id % 32) of words[id / 32] set =
// id allowed. Every id whose bit is clear, and every id past the mask's 32 * words.size() bits,
// gets -inf. The reference of Backend::apply_token_bitmask.
void apply_token_bitmask_row(std::span<float> logits, std::span<const int32_t> words);

}  // namespace nc

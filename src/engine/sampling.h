// Token sampling: penalties, temperature, top-k, top-p, min-p, then a draw from the request's
// own RNG (so a seeded request gives the same tokens whatever else is in the batch).
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "backend/sampling_filter.h"
#include "nanocascade/engine.h"

namespace nc {

// A temperature below this samples greedily (vLLM's epsilon): 1 / t overflows float from about
// 3e-39, logits times 1 / t from far earlier, and the distribution is an argmax long before.
constexpr float kGreedyTemperature = 1e-5f;

// Repetition penalty (prompt and output tokens: a positive logit is divided by it, a negative
// one multiplied), then presence and frequency penalties (output tokens: logit -= presence +
// frequency * count).
void apply_penalties(std::span<float> logits, const SamplingParams& p,
                     std::span<const int32_t> prompt, std::span<const int32_t> output);

// backend/sampling_filter.h's candidates for a request's parameters.
Candidates filter_candidates(std::span<const float> logits, const SamplingParams& p);

// argmax with ties going to the lowest id.
int32_t argmax(std::span<const float> logits);

// Uniform in [0, 1) from 53 random bits (identical on every platform).
double uniform01(std::mt19937_64& rng);

// The next token. `logits` is modified (penalties applied). `masked` ids get -inf first
// (EOS and stop tokens before min_tokens).
int32_t sample_token(std::span<float> logits, const SamplingParams& p,
                     std::span<const int32_t> prompt, std::span<const int32_t> output,
                     std::span<const int32_t> masked, std::mt19937_64& rng);

}  // namespace nc

#include "engine/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "backend/logprobs.h"
#include "core/error.h"

namespace nc {

void SamplingParams::validate() const {
  NC_CHECK_AS(ErrorKind::InvalidArgument, std::isfinite(temperature) && temperature >= 0,
              "sampling: temperature must be >= 0, got {}", temperature);
  NC_CHECK_AS(ErrorKind::InvalidArgument, top_k == -1 || top_k >= 1,
              "sampling: top_k must be -1 (off) or >= 1, got {}", top_k);
  NC_CHECK_AS(ErrorKind::InvalidArgument, top_p > 0 && top_p <= 1,
              "sampling: top_p must be in (0, 1], got {}", top_p);
  NC_CHECK_AS(ErrorKind::InvalidArgument, min_p >= 0 && min_p <= 1,
              "sampling: min_p must be in [0, 1], got {}", min_p);
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              std::isfinite(repetition_penalty) && repetition_penalty > 0,
              "sampling: repetition_penalty must be > 0, got {}", repetition_penalty);
  NC_CHECK_AS(ErrorKind::InvalidArgument, presence_penalty >= -2 && presence_penalty <= 2,
              "sampling: presence_penalty must be in [-2, 2], got {}", presence_penalty);
  NC_CHECK_AS(ErrorKind::InvalidArgument, frequency_penalty >= -2 && frequency_penalty <= 2,
              "sampling: frequency_penalty must be in [-2, 2], got {}", frequency_penalty);
  NC_CHECK_AS(ErrorKind::InvalidArgument, max_tokens >= 1,
              "sampling: max_tokens must be >= 1, got {}", max_tokens);
  NC_CHECK_AS(ErrorKind::InvalidArgument, min_tokens >= 0 && min_tokens <= max_tokens,
              "sampling: min_tokens must be in [0, max_tokens={}], got {}", max_tokens, min_tokens);
  // A grammar that is complete allows only its stop token, which min_tokens would mask: every
  // token masked (review of 2026-12-07: the request ended as a 503).
  NC_CHECK_AS(ErrorKind::InvalidArgument, min_tokens == 0 || !structured.active(),
              "sampling: min_tokens ({}) cannot be combined with structured output ({}): the "
              "grammar decides where the output ends",
              min_tokens, structured_kind_name(structured.kind));
  for (int32_t id : stop_token_ids) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, id >= 0, "sampling: stop token id {} is negative", id);
  }
  for (const std::string& s : stop)
    NC_CHECK_AS(ErrorKind::InvalidArgument, !s.empty(), "sampling: empty stop string");
  NC_CHECK_AS(ErrorKind::InvalidArgument, logprobs >= -1 && logprobs <= kMaxLogprobs,
              "sampling: logprobs must be -1 (off) or in [0, {}], got {}", kMaxLogprobs, logprobs);
  NC_CHECK_AS(ErrorKind::InvalidArgument, prompt_logprobs >= -1 && prompt_logprobs <= kMaxLogprobs,
              "sampling: prompt_logprobs must be -1 (off) or in [0, {}], got {}", kMaxLogprobs,
              prompt_logprobs);
  NC_CHECK_AS(ErrorKind::InvalidArgument, sparse_budget >= -1,
              "sampling: sparse_budget must be -1 (the engine's), 0 (dense) or a token budget > 0, "
              "got {}",
              sparse_budget);
  for (const auto& [id, bias] : logit_bias) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, id >= 0, "logit_bias: token id {} is negative", id);
    NC_CHECK_AS(ErrorKind::InvalidArgument, std::isfinite(bias) && bias >= -100 && bias <= 100,
                "logit_bias: the bias of token {} must be in [-100, 100], got {}", id, bias);
  }
}

void apply_penalties(std::span<float> logits, const SamplingParams& p,
                     std::span<const int32_t> prompt, std::span<const int32_t> output) {
  const int64_t v = int64_t(logits.size());
  auto in_vocab = [v](int32_t id) { return id >= 0 && id < v; };
  if (p.repetition_penalty != 1.0f) {
    std::vector<uint8_t> seen(v, 0);
    for (auto ids : {prompt, output}) {
      for (int32_t id : ids) {
        if (in_vocab(id)) seen[id] = 1;
      }
    }
    for (int64_t i = 0; i < v; ++i) {
      if (!seen[i]) continue;
      logits[i] =
          logits[i] > 0 ? logits[i] / p.repetition_penalty : logits[i] * p.repetition_penalty;
    }
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    std::unordered_map<int32_t, int> counts;
    for (int32_t id : output) {
      if (in_vocab(id)) ++counts[id];
    }
    for (const auto& [id, n] : counts) {
      logits[id] -= p.presence_penalty + p.frequency_penalty * float(n);
    }
  }
}

int32_t argmax(std::span<const float> logits) {
  NC_CHECK(!logits.empty(), "sampling: empty logits");
  // NaN is never the best (the device's draw skips it too); all NaN: id 0.
  int32_t best = -1;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) continue;
    if (best < 0 || logits[i] > logits[best]) best = int32_t(i);  // strict: ties keep the lower id
  }
  return std::max(best, 0);
}

double uniform01(std::mt19937_64& rng) {
  return double(rng() >> 11) * 0x1.0p-53;
}

namespace {}  // namespace

Candidates filter_candidates(std::span<const float> logits, const SamplingParams& p) {
  return filter_candidates(logits, CandidateFilter{p.temperature, p.top_k, p.top_p, p.min_p});
}

int32_t sample_token(std::span<float> logits, const SamplingParams& p,
                     std::span<const int32_t> prompt, std::span<const int32_t> output,
                     std::span<const int32_t> masked, std::mt19937_64& rng) {
  for (int32_t id : masked) {
    if (id >= 0 && size_t(id) < logits.size()) logits[id] = -std::numeric_limits<float>::infinity();
  }
  apply_penalties(logits, p, prompt, output);
  if (p.temperature == 0.0f) return argmax(logits);
  const bool filtered = p.top_k > 0 || p.top_p < 1.0f || p.min_p > 0.0f;
  const double u = uniform01(rng);
  if (filtered) {
    const Candidates c = filter_candidates(logits, p);
    double cum = 0;
    for (size_t i = 0; i < c.ids.size(); ++i) {
      cum += c.probs[i];
      if (u < cum) return c.ids[i];
    }
    return c.ids.back();
  }
  // Plain temperature sampling: no sort, one pass over the vocabulary.
  const double inv_t = 1.0 / double(p.temperature);
  const double top = double(logits[argmax(logits)]) * inv_t;
  double sum = 0;  // over the ids the draw below can take: no -inf, no NaN
  for (float l : logits)
    if (l > -std::numeric_limits<float>::infinity()) sum += std::exp(double(l) * inv_t - top);
  const double target = u * sum;
  double cum = 0;
  int32_t last = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!(logits[i] > -std::numeric_limits<float>::infinity())) continue;
    cum += std::exp(double(logits[i]) * inv_t - top);
    last = int32_t(i);
    if (target < cum) return last;
  }
  return last;
}

}  // namespace nc

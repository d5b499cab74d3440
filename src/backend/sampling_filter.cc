#include "backend/sampling_filter.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace nc {
namespace {

// Ids of the finite logits, sorted by decreasing logit (ties: lower id first); only the first
// `keep` need to be in order.
std::vector<int32_t> sorted_ids(std::span<const float> logits, size_t keep) {
  std::vector<int32_t> ids;
  ids.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] > -std::numeric_limits<float>::infinity()) ids.push_back(int32_t(i));
  }
  auto before = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  keep = std::min(keep, ids.size());
  std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), before);
  ids.resize(keep);
  return ids;
}

}  // namespace

Candidates filter_candidates(std::span<const float> logits, const CandidateFilter& p) {
  NC_CHECK(p.temperature > 0, "sampling: filter_candidates needs temperature > 0");
  const size_t k = p.top_k > 0 ? size_t(p.top_k) : logits.size();
  Candidates c;
  c.ids = sorted_ids(logits, k);
  NC_CHECK(!c.ids.empty(), "sampling: every logit is -inf or NaN");
  // Softmax of logit / temperature over the kept ids, in double for stable sums.
  const double inv_t = 1.0 / double(p.temperature);
  const double top = double(logits[c.ids[0]]) * inv_t;
  c.probs.resize(c.ids.size());
  double sum = 0;
  for (size_t i = 0; i < c.ids.size(); ++i) {
    c.probs[i] = std::exp(double(logits[c.ids[i]]) * inv_t - top);
    sum += c.probs[i];
  }
  for (double& q : c.probs) q /= sum;
  size_t n = c.ids.size();
  if (p.top_p < 1.0f) {
    double cum = 0;
    size_t i = 0;
    while (i < n) {
      cum += c.probs[i++];
      if (cum >= double(p.top_p)) break;
    }
    n = i;
  }
  if (p.min_p > 0.0f) {
    const double floor = double(p.min_p) * c.probs[0];
    size_t i = 1;
    while (i < n && c.probs[i] >= floor) ++i;
    n = i;
  }
  c.ids.resize(n);
  c.probs.resize(n);
  sum = std::accumulate(c.probs.begin(), c.probs.end(), 0.0);
  for (double& q : c.probs) q /= sum;
  return c;
}

void apply_token_bitmask_row(std::span<float> logits, std::span<const int32_t> words) {
  const size_t bits = words.size() * 32;
  for (size_t i = 0; i < logits.size(); ++i) {
    const bool allowed = i < bits && ((uint32_t(words[i / 32]) >> (i % 32)) & 1u);
    if (!allowed) logits[i] = -std::numeric_limits<float>::infinity();
  }
}

}  // namespace nc

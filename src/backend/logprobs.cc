#include "backend/logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace nc {

RowLogprobs row_logprobs(std::span<const float> logits, int32_t token, int k) {
  NC_CHECK(k >= 0 && k <= kMaxLogprobs, "logprobs: {} top entries asked, at most {}", k,
           kMaxLogprobs);
  NC_CHECK(token >= 0 && size_t(token) < logits.size(),
           "logprobs: token {} outside the row of {} logits", token, logits.size());
  float mx = -std::numeric_limits<float>::infinity();
  for (float x : logits) mx = std::max(mx, x);
  double sum = 0;
  if (std::isfinite(mx)) {
    for (float x : logits) sum += std::exp(double(x - mx));
  }
  // log_softmax(x) = x - (max + log(sum exp(x - max))), in float32 as torch computes it.
  const float lse = std::isfinite(mx) ? mx + float(std::log(sum)) : mx;
  auto lp = [&](int32_t id) {
    const float x = logits[size_t(id)];
    return std::isfinite(lse) ? x - lse : -std::numeric_limits<float>::infinity();
  };
  RowLogprobs out;
  out.token = token;
  out.logprob = lp(token);
  if (k == 0) return out;
  std::vector<int32_t> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i);
  const size_t keep = std::min(size_t(k), ids.size());
  std::partial_sort(ids.begin(), ids.begin() + std::ptrdiff_t(keep), ids.end(),
                    [&](int32_t a, int32_t b) {
                      const float la = logits[size_t(a)], lb = logits[size_t(b)];
                      return la > lb || (la == lb && a < b);
                    });
  ids.resize(keep);
  out.top_ids = ids;
  for (int32_t id : ids) out.top_logprobs.push_back(lp(id));
  return out;
}

}  // namespace nc

// log_softmax: one row of float logits as log-probabilities in double, for the quality tools
// (kv_quality.cc, long_context_kl.cc) that compare next-token distributions.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace nc::quality {

inline std::vector<double> log_softmax(const float* x, int64_t V) {
  double mx = x[0];
  for (int64_t i = 1; i < V; ++i) mx = std::max(mx, double(x[i]));
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(x[i]) - mx);
  const double lse = mx + std::log(sum);
  std::vector<double> out(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) out[size_t(i)] = double(x[i]) - lse;
  return out;
}

}  // namespace nc::quality

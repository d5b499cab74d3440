// Shared pieces of the communicators' tests (tests/test_thread_group.cc,
// tests/test_socket_group.cc): host tensors in and out, and per-rank inputs with their sum in rank
// order, the order every communicator's contract (dist/communicator.h) fixes.
#pragma once
#include <cstring>
#include <random>
#include <vector>

#include "core/tensor.h"

namespace nc::testing {

inline Tensor host_f32(const std::vector<float>& v, Shape shape) {
  Tensor t = Tensor::empty_host(std::move(shape), DType::F32);
  std::memcpy(t.data(), v.data(), v.size() * sizeof(float));
  return t;
}

inline std::vector<float> values(const Tensor& t) {
  const float* p = static_cast<const float*>(t.data());
  return std::vector<float>(p, p + t.numel());
}

// `size` ranks' n values each, of mixed magnitudes (so the order of the sum shows in its bits).
inline std::vector<std::vector<float>> rank_inputs(int size, int64_t n) {
  std::vector<std::vector<float>> inputs(static_cast<size_t>(size));
  std::mt19937 rng(static_cast<uint32_t>(size));
  std::normal_distribution<float> normal(0.0f, 1e3f);
  for (auto& v : inputs)
    for (int64_t i = 0; i < n; ++i) v.push_back(normal(rng) * (i % 7 == 0 ? 1e-6f : 1.0f));
  return inputs;
}

// ((x0 + x1) + x2) + ... elementwise.
inline std::vector<float> rank_order_sum(const std::vector<std::vector<float>>& inputs) {
  std::vector<float> sum = inputs[0];
  for (size_t r = 1; r < inputs.size(); ++r)
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += inputs[r][i];
  return sum;
}

}  // namespace nc::testing

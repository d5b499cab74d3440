// Helpers for the GPU tests: the same random inputs on the CPU backend (the oracle, float32) and
// the CUDA backend (bf16). Inputs are rounded to bf16 first, so both see identical values.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"

namespace nc::testing {

inline float round_bf16(float x) {
  return bf16_to_f32(f32_to_bf16(x));
}

inline std::vector<float> random_vec(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = round_bf16(normal(rng));
  return v;
}

// ||out - ref|| / ||ref||; any NaN or inf in out gives +inf.
inline double rel_error(const std::vector<float>& out, const std::vector<float>& ref) {
  if (out.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return std::numeric_limits<double>::infinity();
    num += (double(out[i]) - ref[i]) * (double(out[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

constexpr double kBf16Tol = 1e-2;

class GpuVsCpu : public ::testing::Test {
 protected:
  void SetUp() override {
    cpu = make_cpu_backend();
    gpu = make_cuda_backend(0);
  }

  // The same values on both backends (float32 on the CPU, bf16 on the GPU).
  std::pair<Tensor, Tensor> both(const Shape& shape, const std::vector<float>& data) {
    HostTensor h{shape, data};
    return {cpu->upload(h), gpu->upload(h)};
  }
  std::pair<Tensor, Tensor> both_random(const Shape& shape, float scale = 1.0f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return both(shape, random_vec(rng, size_t(n), scale));
  }
  std::pair<Tensor, Tensor> both_i32(const std::vector<int32_t>& v) {
    Tensor c = cpu->alloc({int64_t(v.size())}, DType::I32);
    Tensor g = gpu->alloc({int64_t(v.size())}, DType::I32);
    cpu->copy_from_host(c, v.data());
    gpu->copy_from_host(g, v.data());
    return {c, g};
  }
  // Output tensors; the GPU one is poisoned with NaN so an unwritten element fails.
  std::pair<Tensor, Tensor> outputs(const Shape& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return both(shape, std::vector<float>(size_t(n), std::nanf("")));
  }

  double err(Backend& b_out, const Tensor& out, const Tensor& ref) {
    return rel_error(b_out.to_host_f32(out), cpu->to_host_f32(ref));
  }

  std::mt19937 rng{20251126};
  std::unique_ptr<Backend> cpu, gpu;
};

}  // namespace nc::testing

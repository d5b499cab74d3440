// Helpers for the FP8 KV cache GPU tests (test_cuda_fp8_kv*.cc): e4m3 page tensors with the same
// codes on the CPU backend (the reference: it decodes codes exactly to float32) and the CUDA
// backend, and their bytes read back.
#pragma once
#include <cuda_runtime_api.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/fp8.h"
#include "gpu_test_util.h"

namespace nc::testing {

inline Shape fp8_page_shape(const KVCacheShape& kv) {
  return kv.layout == KVLayout::NHD
             ? Shape{kv.num_pages, 2, kv.page_size, kv.num_kv_heads, kv.head_dim}
             : Shape{kv.num_pages, 2, kv.num_kv_heads, kv.page_size, kv.head_dim};
}

// The shape's cache as fp8 with the given scales.
inline AttentionShape with_fp8(AttentionShape s, float k_scale, float v_scale) {
  s.kv.fp8 = true;
  s.kv.k_scale = k_scale;
  s.kv.v_scale = v_scale;
  return s;
}

// Codes of normal(0, 1) values divided by `scale` (as the append stores values of that scale).
inline std::vector<uint8_t> random_codes(std::mt19937& rng, size_t n, float scale) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  std::vector<uint8_t> codes(n);
  quantize_e4m3(x.data(), int64_t(n), 1.0f / scale, codes.data());
  return codes;
}

inline Tensor upload_codes(Backend& b, const Shape& shape, const std::vector<uint8_t>& codes) {
  Tensor t = b.alloc(shape, DType::F8E4M3);
  b.copy_from_host(t, codes.data());
  return t;
}

// The tensor's bytes (synchronises the CUDA backend first).
inline std::vector<uint8_t> read_bytes(Backend& b, const Tensor& t) {
  std::vector<uint8_t> out(t.nbytes());
  if (b.device() == Device::CPU) {
    std::memcpy(out.data(), t.data(), out.size());
    return out;
  }
  cuda_synchronize(b);
  EXPECT_EQ(cudaMemcpy(out.data(), t.data(), out.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  return out;
}

// The first index where two code arrays differ, or -1.
inline int64_t first_code_difference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return int64_t(i);
  return -1;
}

}  // namespace nc::testing

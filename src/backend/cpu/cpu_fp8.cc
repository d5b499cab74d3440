// The CPU's FP8 linear (contract: backend/cpu/cpu_fp8.h).
#include "backend/cpu/cpu_fp8.h"

#include <vector>

#include "backend/fp8_weight.h"
#include "core/error.h"
#include "core/fp8.h"
#include "core/thread_pool.h"

namespace nc {
namespace {

constexpr int64_t kStripRows = 16;  // weight rows decoded at once (16 x K floats stay in L2)

// The fixed-order float32 dot product: 8 partial sums over k (lane k % 8), then added pairwise.
// The compiler turns the lane loop into vector adds; the order is the same on every path.
float dot8(const float* a, const float* b, int64_t K) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= K; k += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[k + j] * b[k + j];
  for (int j = 0; k < K; ++k, ++j) acc[j] += a[k] * b[k];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

}  // namespace

void cpu_fp8_linear(const float* x, int64_t N, int64_t K, const Tensor& w, float* out,
                    ThreadPool& pool) {
  const float* w_scale = fp8_row_scales(w);
  const float input_scale = fp8_input_scale(w);
  const int64_t M = w.dim(0);
  NC_CHECK(w.dim(1) == K, "fp8 linear: input has {} features, weight {} expects {}", K,
           shape_str(w.shape()), w.dim(1));
  const float* table = e4m3_table();
  // The activations, quantised once per call and kept decoded (the values the GEMM multiplies).
  std::vector<float> a(static_cast<size_t>(N * K)), s_a(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + n * K;
    const float s = fp8_activation_scale(xr, K, input_scale);
    s_a[size_t(n)] = s;
    for (int64_t k = 0; k < K; ++k) a[size_t(n * K + k)] = table[f32_to_e4m3(xr[k] / s)];
  }
  const uint8_t* codes = static_cast<const uint8_t*>(w.data());
  const int64_t strips = (M + kStripRows - 1) / kStripRows;
  pool.parallel_for(strips, [&](int64_t s0, int64_t s1) {
    std::vector<float> b(static_cast<size_t>(kStripRows * K));
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t m0 = s * kStripRows, m1 = std::min(M, m0 + kStripRows);
      for (int64_t i = 0; i < (m1 - m0) * K; ++i) b[size_t(i)] = table[codes[m0 * K + i]];
      for (int64_t n = 0; n < N; ++n)
        for (int64_t m = m0; m < m1; ++m)
          out[n * M + m] =
              dot8(a.data() + n * K, b.data() + (m - m0) * K, K) * s_a[size_t(n)] * w_scale[m];
    }
  });
}

}  // namespace nc

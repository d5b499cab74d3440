// AVX2 attention row loops (contract: attention_rows.h); this file alone of the attention code is
// compiled with -mavx2, and without contraction: the same float operations as the portable loops,
// eight lanes at a time. Internal linkage except avx2_rows(), as in quant_dot_avx2.cc.
#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/attention_rows.h"

namespace nc::attn {
namespace {

// Lanes 0-7 and 8-15 of the portable kernel's 16 partial sums, then its pairwise tree.
float dot_fixed(const float* q, const float* k, int D) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int d = 0;
  for (; d + 16 <= D; d += 16) {
    a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + d)));
    a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_loadu_ps(q + d + 8), _mm256_loadu_ps(k + d + 8)));
  }
  const __m256 a = _mm256_add_ps(a0, a1);                                         // l += l + 8
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));  // l += l + 4
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                         // l += l + 2
  s = _mm_add_ss(s, _mm_movehdup_ps(s));                                          // l += l + 1
  float dot = _mm_cvtss_f32(s);
  for (; d < D; ++d) dot += q[d] * k[d];
  return dot;
}

void scores(const float* q, const float* k, int64_t stride, int n, int D, float scale, float* s) {
  for (int t = 0; t < n; ++t) s[t] = dot_fixed(q, k + t * stride, D) * scale;
}

void accumulate(const float* p, const float* v, int64_t stride, int n, int D, float* out) {
  int d = 0;
  for (; d + 32 <= D; d += 32) {  // four registers of out stay in registers across the keys
    __m256 o0 = _mm256_loadu_ps(out + d), o1 = _mm256_loadu_ps(out + d + 8);
    __m256 o2 = _mm256_loadu_ps(out + d + 16), o3 = _mm256_loadu_ps(out + d + 24);
    for (int t = 0; t < n; ++t) {
      const __m256 pt = _mm256_set1_ps(p[t]);
      const float* vt = v + t * stride + d;
      o0 = _mm256_add_ps(o0, _mm256_mul_ps(pt, _mm256_loadu_ps(vt)));
      o1 = _mm256_add_ps(o1, _mm256_mul_ps(pt, _mm256_loadu_ps(vt + 8)));
      o2 = _mm256_add_ps(o2, _mm256_mul_ps(pt, _mm256_loadu_ps(vt + 16)));
      o3 = _mm256_add_ps(o3, _mm256_mul_ps(pt, _mm256_loadu_ps(vt + 24)));
    }
    _mm256_storeu_ps(out + d, o0);
    _mm256_storeu_ps(out + d + 8, o1);
    _mm256_storeu_ps(out + d + 16, o2);
    _mm256_storeu_ps(out + d + 24, o3);
  }
  for (; d < D; ++d)
    for (int t = 0; t < n; ++t) out[d] += p[t] * v[t * stride + d];
}

}  // namespace

RowKernels avx2_rows() {
  return {scores, accumulate};
}

}  // namespace nc::attn

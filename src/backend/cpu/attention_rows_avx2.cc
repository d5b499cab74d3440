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

// The 16 partial sums of q . k folded to 8 lanes (the tree's first step, l += l + 8).
__m256 partial8(const float* q, const float* k, int D) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (int d = 0; d + 16 <= D; d += 16) {
    a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + d)));
    a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_loadu_ps(q + d + 8), _mm256_loadu_ps(k + d + 8)));
  }
  return _mm256_add_ps(a0, a1);
}

// Eight keys at once (D a multiple of 16): the rest of each key's tree (l += l + 4, + 2, + 1)
// done for two to eight keys per instruction, every add the same pair in the same order as
// dot_fixed's.
void scores8(const float* q, const float* k, int64_t stride, int D, __m256 scale, float* s) {
  __m256 a[8];
  for (int j = 0; j < 8; ++j) a[j] = partial8(q, k + j * stride, D);
  __m256 p[4];  // p[i]: key 2i in lanes 0-3, key 2i + 1 in lanes 4-7 (l += l + 4)
  for (int i = 0; i < 4; ++i)
    p[i] = _mm256_add_ps(_mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x20),
                         _mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x31));
  // l += l + 2: lower half keys 0, 2 (resp. 4, 6), upper half keys 1, 3 (resp. 5, 7).
  const __m256 c0 = _mm256_add_ps(_mm256_shuffle_ps(p[0], p[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm256_shuffle_ps(p[0], p[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 c1 = _mm256_add_ps(_mm256_shuffle_ps(p[2], p[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm256_shuffle_ps(p[2], p[3], _MM_SHUFFLE(3, 2, 3, 2)));
  // l += l + 1: lanes hold keys 0, 2, 4, 6, 1, 3, 5, 7.
  const __m256 d = _mm256_add_ps(_mm256_shuffle_ps(c0, c1, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm256_shuffle_ps(c0, c1, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m256 ordered =
      _mm256_permutevar8x32_ps(_mm256_mul_ps(d, scale), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_ps(s, ordered);
}

void scores(const float* q, const float* k, int64_t stride, int n, int D, float scale, float* s) {
  int t = 0;
  if (D % 16 == 0)
    for (; t + 8 <= n; t += 8) scores8(q, k + t * stride, stride, D, _mm256_set1_ps(scale), s + t);
  for (; t < n; ++t) s[t] = dot_fixed(q, k + t * stride, D) * scale;
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

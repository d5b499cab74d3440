// AVX2 kernels that work on four rows at once with the scale work of the four rows in one
// vector operation (quant_dot.h: Dot4Fn for Q4_1, DotX4Fn for Q4_1 and Q8_0); compiled with the
// AVX2 flags, internal linkage except use_avx2_four_row_kernels() (as quant_dot_avx2.cc).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/quant_avx2_helpers.h"
#include "backend/cpu/quant_dot.h"

namespace nc::qk {
namespace {

// Q4_1 at four weight rows by one x row, the scale work of the four rows in one vector: the
// halves (d_j, m_j) of rows j = 0..3 as 8 floats times (y.d, y.s, ...) give every d_j * y.d and
// m_j * y.s at once, and the min sums accumulate lane-wise: the same products and sums per row
// as q4_1_tile, so the same bits.
void q4_1_4w_packed(const void* w, int64_t ws, const void* x, int64_t cols, float* out) {
  const auto* y = static_cast<const XBlock32*>(x);
  const auto* w0 = static_cast<const uint8_t*>(w);
  const __m256i idx[4] = {_mm256_set1_epi32(0), _mm256_set1_epi32(2), _mm256_set1_epi32(4),
                          _mm256_set1_epi32(6)};
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  __m256 mins = _mm256_setzero_ps();  // lanes 1, 3, 5, 7: the four rows' min sums
  for (int64_t i = 0; i < cols / kQK; ++i) {
    const BlockQ4_1* b[4];
    int32_t dm[4];
    for (int j = 0; j < 4; ++j) {
      b[j] = reinterpret_cast<const BlockQ4_1*>(w0 + j * ws) + i;
      std::memcpy(&dm[j], &b[j]->d, 4);
    }
    const __m256 dm8 = _mm256_cvtph_ps(_mm_setr_epi32(dm[0], dm[1], dm[2], dm[3]));
    const __m256 yds =
        _mm256_setr_ps(y[i].d, y[i].s, y[i].d, y[i].s, y[i].d, y[i].s, y[i].d, y[i].s);
    const __m256 prod = _mm256_mul_ps(dm8, yds);
    mins = _mm256_add_ps(mins, prod);
    const __m256i yq = load256(y[i].q);
    for (int j = 0; j < 4; ++j) {
      const __m256 sj = _mm256_cvtepi32_ps(dot_quads(unpack_nibbles(b[j]->qs), yq));
      acc[j] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(prod, idx[j]), sj, acc[j]);
    }
  }
  float m[8];
  _mm256_storeu_ps(m, mins);
  for (int j = 0; j < 4; ++j) out[j] = hsum(acc[j]) + m[2 * j + 1];
}

// ---- 32-value formats, four x rows interleaved (XBlock32x4) ----

// Lane r of a 4-float vector in all 8 lanes.
__m256 lane(__m128 v, __m256i index) {
  return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v), index);
}

void q4_1_x4(const void* w, const void* x4, int64_t cols, float* out, int64_t os) {
  const auto* b = static_cast<const BlockQ4_1*>(w);
  const auto* y = static_cast<const XBlock32x4*>(x4);
  const __m256i idx[4] = {_mm256_set1_epi32(0), _mm256_set1_epi32(1), _mm256_set1_epi32(2),
                          _mm256_set1_epi32(3)};
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  __m128 mins = _mm_setzero_ps();
  for (int64_t i = 0; i < cols / kQK; ++i) {
    const __m256i q = unpack_nibbles(b[i].qs);
    int32_t dm_bits;
    std::memcpy(&dm_bits, &b[i].d, 4);  // d and m, adjacent halves
    const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(dm_bits));
    const __m128 ds = _mm_mul_ps(_mm_shuffle_ps(dm, dm, 0x00), _mm_loadu_ps(y[i].d));
    mins = _mm_add_ps(mins, _mm_mul_ps(_mm_shuffle_ps(dm, dm, 0x55), _mm_loadu_ps(y[i].s)));
    for (int r = 0; r < 4; ++r) {
      const __m256 sr = _mm256_cvtepi32_ps(dot_quads(q, load256(y[i].q[r])));
      acc[r] = _mm256_fmadd_ps(lane(ds, idx[r]), sr, acc[r]);
    }
  }
  float m[4];
  _mm_storeu_ps(m, mins);
  for (int r = 0; r < 4; ++r) out[r * os] = hsum(acc[r]) + m[r];
}

void q8_0_x4(const void* w, const void* x4, int64_t cols, float* out, int64_t os) {
  const auto* b = static_cast<const BlockQ8_0*>(w);
  const auto* y = static_cast<const XBlock32x4*>(x4);
  const __m256i idx[4] = {_mm256_set1_epi32(0), _mm256_set1_epi32(1), _mm256_set1_epi32(2),
                          _mm256_set1_epi32(3)};
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  for (int64_t i = 0; i < cols / kQK; ++i) {
    const __m256i q = load256(b[i].qs);
    const __m256i aq = _mm256_sign_epi8(q, q);
    const __m128 ds = _mm_mul_ps(_mm_set1_ps(h2f(b[i].d)), _mm_loadu_ps(y[i].d));
    for (int r = 0; r < 4; ++r) {
      const __m256i sq = _mm256_sign_epi8(load256(y[i].q[r]), q);
      const __m256 sr = _mm256_cvtepi32_ps(dot_quads(aq, sq));
      acc[r] = _mm256_fmadd_ps(lane(ds, idx[r]), sr, acc[r]);
    }
  }
  for (int r = 0; r < 4; ++r) out[r * os] = hsum(acc[r]);
}

}  // namespace

void use_avx2_four_row_kernels(QuantKernels* k) {
  k->q4_1_4w = q4_1_4w_packed;
  k->q4_1_x4 = q4_1_x4;
  k->q8_0_x4 = q8_0_x4;
}

}  // namespace nc::qk

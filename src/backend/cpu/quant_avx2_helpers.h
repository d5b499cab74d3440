// Small AVX2 helpers of the AVX2 kernel units (quant_dot_avx2*.cc), which alone include this
// header: every function is static (internal linkage), so no copy built with AVX2 can stand in
// for code of another unit at link time.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace nc::qk {

static inline float h2f(uint16_t h) {
  return _cvtsh_ss(h);
}

static inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

static inline __m256i load256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// 16 bytes of nibbles -> 32 bytes: the low nibbles, then the high ones (Q4_0/Q4_1 order).
static inline __m256i unpack_nibbles(const uint8_t* p) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
  return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

// Sums of pairs of unsigned(u) * signed(s) bytes as 16 int16 (no saturation for our ranges).
static inline __m256i dot_pairs(__m256i u, __m256i s) {
  return _mm256_maddubs_epi16(u, s);
}

// Eight int32 sums of four products each of unsigned u and signed s bytes.
static inline __m256i dot_quads(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// Signed x signed: |a| times b with a's sign (b never holds -128: activations are in +-127).
static inline __m256i dot_quads_signed(__m256i a, __m256i b) {
  return dot_quads(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

}  // namespace nc::qk

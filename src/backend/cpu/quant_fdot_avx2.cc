// AVX2 + FMA + F16C float-activation kernels (quant_fdot.h); this file alone among them is
// compiled with those flags, and everything but use_avx2_float_kernels() has internal linkage (as
// quant_dot_avx2.cc, which says why).
//
// Each format has a decoder that turns 32 values of a block (group g of its 32-value groups) into
// four vectors of 8 floats, equal to dequantize()'s values. The direct kernel decodes four weight
// rows in registers and multiplies them with one x row; decode_row stores the same vectors, and
// the gemm multiplies stored rows with several x rows. All three accumulate one 8-lane vector per
// output with fma(w, x, acc) in increasing k, then hsum(): the same operations, the same bits.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "backend/cpu/quant_avx2_helpers.h"
#include "backend/cpu/quant_blocks.h"
#include "backend/cpu/quant_fdot.h"

namespace nc::qk {
namespace {

__m256i bytes_u32(const uint8_t* p) {  // 8 bytes, zero-extended to 8 int32
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
__m256 to_float(__m256i v) {
  return _mm256_cvtepi32_ps(v);
}
__m256 splat_h(uint16_t h) {
  return _mm256_set1_ps(h2f(h));
}

// ---- decoders: group g of a block -> v[0..3] (values 32g .. 32g + 31, in order) ----

struct DecQ4_0 {
  using Block = BlockQ4_0;
  static constexpr int kValues = kQK, kGroups = 1;
  static void decode(const Block& b, int, __m256* v) {
    const __m256 d = splat_h(b.d);
    const __m256i a = bytes_u32(b.qs), c = bytes_u32(b.qs + 8);
    const __m256i f = _mm256_set1_epi32(0x0F), eight = _mm256_set1_epi32(8);
    v[0] = _mm256_mul_ps(d, to_float(_mm256_sub_epi32(_mm256_and_si256(a, f), eight)));
    v[1] = _mm256_mul_ps(d, to_float(_mm256_sub_epi32(_mm256_and_si256(c, f), eight)));
    v[2] = _mm256_mul_ps(d, to_float(_mm256_sub_epi32(_mm256_srli_epi32(a, 4), eight)));
    v[3] = _mm256_mul_ps(d, to_float(_mm256_sub_epi32(_mm256_srli_epi32(c, 4), eight)));
  }
};

struct DecQ4_1 {
  using Block = BlockQ4_1;
  static constexpr int kValues = kQK, kGroups = 1;
  static void decode(const Block& b, int, __m256* v) {
    const __m256 d = splat_h(b.d), m = splat_h(b.m);
    const __m256i a = bytes_u32(b.qs), c = bytes_u32(b.qs + 8);
    const __m256i f = _mm256_set1_epi32(0x0F);
    v[0] = _mm256_fmadd_ps(d, to_float(_mm256_and_si256(a, f)), m);
    v[1] = _mm256_fmadd_ps(d, to_float(_mm256_and_si256(c, f)), m);
    v[2] = _mm256_fmadd_ps(d, to_float(_mm256_srli_epi32(a, 4)), m);
    v[3] = _mm256_fmadd_ps(d, to_float(_mm256_srli_epi32(c, 4)), m);
  }
};

struct DecQ8_0 {
  using Block = BlockQ8_0;
  static constexpr int kValues = kQK, kGroups = 1;
  static void decode(const Block& b, int, __m256* v) {
    const __m256 d = splat_h(b.d);
    for (int c = 0; c < 4; ++c) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 8 * c));
      v[c] = _mm256_mul_ps(to_float(_mm256_cvtepi8_epi32(q)), d);
    }
  }
};

// Q4_K / Q5_K: group g is sub-block g: w = (d * sc) * q - dmin * mn.
template <bool kFive>
struct DecQ45_K {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  static constexpr int kValues = kQKK, kGroups = 8;
  static void decode(const Block& b, int g, __m256* v) {
    int sc, mn;
    k_scale_min(b.scales, g, &sc, &mn);
    const __m256 dl = _mm256_set1_ps(h2f(b.d) * float(sc));
    const __m256 ml = _mm256_set1_ps(-(h2f(b.dmin) * float(mn)));
    const uint8_t* q = b.qs + 32 * (g / 2);
    const __m128i shift = _mm_cvtsi32_si128(4 * (g % 2));
    const __m256i f = _mm256_set1_epi32(0x0F);
    for (int c = 0; c < 4; ++c) {
      __m256i x = _mm256_and_si256(_mm256_srl_epi32(bytes_u32(q + 8 * c), shift), f);
      if constexpr (kFive) {
        const __m256i h = _mm256_srl_epi32(bytes_u32(b.qh + 8 * c), _mm_cvtsi32_si128(g));
        x = _mm256_or_si256(x, _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(1)), 4));
      }
      v[c] = _mm256_fmadd_ps(dl, to_float(x), ml);
    }
  }
};

// Q6_K: group c holds sub-blocks 2c and 2c + 1 (16 values each): w = (d * sc) * (q - 32).
struct DecQ6_K {
  using Block = BlockQ6_K;
  static constexpr int kValues = kQKK, kGroups = 8;
  static void decode(const Block& b, int c, __m256* v) {
    const int g = c / 4, part = c % 4;
    const uint8_t* ql = b.ql + 64 * g + 32 * (part % 2);
    const uint8_t* qh = b.qh + 32 * g;
    const __m128i lshift = _mm_cvtsi32_si128(4 * (part / 2)), hshift = _mm_cvtsi32_si128(2 * part);
    const float d = h2f(b.d);
    const __m256 s0 = _mm256_set1_ps(d * float(b.scales[2 * c]));
    const __m256 s1 = _mm256_set1_ps(d * float(b.scales[2 * c + 1]));
    const __m256i f = _mm256_set1_epi32(0x0F), three = _mm256_set1_epi32(3);
    for (int k = 0; k < 4; ++k) {
      const __m256i lo = _mm256_and_si256(_mm256_srl_epi32(bytes_u32(ql + 8 * k), lshift), f);
      const __m256i hi = _mm256_and_si256(_mm256_srl_epi32(bytes_u32(qh + 8 * k), hshift), three);
      const __m256i q =
          _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), _mm256_set1_epi32(32));
      v[k] = _mm256_mul_ps(k < 2 ? s0 : s1, to_float(q));
    }
  }
};

// ---- the three kernels of a format ----

template <class Dec>
const typename Dec::Block& block_of(const void* w, int64_t ws, int j, int64_t i) {
  return reinterpret_cast<const typename Dec::Block*>(static_cast<const uint8_t*>(w) + j * ws)[i];
}

template <class Dec>
void decode_row(const void* w, int64_t cols, float* out) {
  __m256 v[4];
  for (int64_t i = 0; i < cols / Dec::kValues; ++i)
    for (int g = 0; g < Dec::kGroups; ++g, out += 32) {
      Dec::decode(block_of<Dec>(w, 0, 0, i), g, v);
      for (int c = 0; c < 4; ++c) _mm256_storeu_ps(out + 8 * c, v[c]);
    }
}

constexpr int kDirectRows = 4;

template <class Dec>
void direct(const void* w, int64_t ws, const float* x, int64_t cols, float* out) {
  __m256 acc[kDirectRows];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (int64_t i = 0; i < cols / Dec::kValues; ++i)
    for (int g = 0; g < Dec::kGroups; ++g) {
      const float* xp = x + i * Dec::kValues + 32 * g;
      __m256 xv[4];
      for (int c = 0; c < 4; ++c) xv[c] = _mm256_loadu_ps(xp + 8 * c);
      for (int j = 0; j < kDirectRows; ++j) {
        __m256 v[4];
        Dec::decode(block_of<Dec>(w, ws, j, i), g, v);
        for (int c = 0; c < 4; ++c) acc[j] = _mm256_fmadd_ps(v[c], xv[c], acc[j]);
      }
    }
  for (int j = 0; j < kDirectRows; ++j) out[j] = hsum(acc[j]);
}

// Q4_1's direct kernel with the scale work of the four rows in one conversion: their (d, m)
// halves side by side become 8 floats at once, each then broadcast by a permute. The values are
// DecQ4_1's (an f16 converts to the same float either way), the operations on them the same.
void direct_q4_1(const void* w, int64_t ws, const float* x, int64_t cols, float* out) {
  static_assert(kDirectRows == 4);
  const auto* w0 = static_cast<const uint8_t*>(w);
  const __m256i f = _mm256_set1_epi32(0x0F);
  __m256 acc[4];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (int64_t i = 0; i < cols / kQK; ++i) {
    const BlockQ4_1* b[4];
    int32_t dm[4];
    for (int j = 0; j < 4; ++j) {
      b[j] = reinterpret_cast<const BlockQ4_1*>(w0 + j * ws) + i;
      std::memcpy(&dm[j], &b[j]->d, 4);  // d and m, adjacent halves
    }
    const __m256 dm8 = _mm256_cvtph_ps(_mm_setr_epi32(dm[0], dm[1], dm[2], dm[3]));
    __m256 xv[4];
    for (int c = 0; c < 4; ++c) xv[c] = _mm256_loadu_ps(x + kQK * i + 8 * c);
    for (int j = 0; j < 4; ++j) {
      const __m256 d = _mm256_permutevar8x32_ps(dm8, _mm256_set1_epi32(2 * j));
      const __m256 m = _mm256_permutevar8x32_ps(dm8, _mm256_set1_epi32(2 * j + 1));
      const __m256i a = bytes_u32(b[j]->qs), c = bytes_u32(b[j]->qs + 8);
      const __m256 v0 = _mm256_fmadd_ps(d, to_float(_mm256_and_si256(a, f)), m);
      const __m256 v1 = _mm256_fmadd_ps(d, to_float(_mm256_and_si256(c, f)), m);
      const __m256 v2 = _mm256_fmadd_ps(d, to_float(_mm256_srli_epi32(a, 4)), m);
      const __m256 v3 = _mm256_fmadd_ps(d, to_float(_mm256_srli_epi32(c, 4)), m);
      acc[j] = _mm256_fmadd_ps(v0, xv[0], acc[j]);
      acc[j] = _mm256_fmadd_ps(v1, xv[1], acc[j]);
      acc[j] = _mm256_fmadd_ps(v2, xv[2], acc[j]);
      acc[j] = _mm256_fmadd_ps(v3, xv[3], acc[j]);
    }
  }
  for (int j = 0; j < 4; ++j) out[j] = hsum(acc[j]);
}

// ---- gemm over decoded rows: MW x NX outputs per pass, each its own accumulator ----

template <int MW, int NX>
void micro(const float* w, int64_t ldw, const float* x, int64_t ldx, int64_t cols, float* out,
           int64_t ldo) {
  __m256 acc[MW][NX];
  for (int j = 0; j < MW; ++j)
    for (int r = 0; r < NX; ++r) acc[j][r] = _mm256_setzero_ps();
  for (int64_t k = 0; k < cols; k += 8) {
    __m256 wv[MW];
    for (int j = 0; j < MW; ++j) wv[j] = _mm256_loadu_ps(w + j * ldw + k);
    for (int r = 0; r < NX; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + r * ldx + k);
      for (int j = 0; j < MW; ++j) acc[j][r] = _mm256_fmadd_ps(wv[j], xv, acc[j][r]);
    }
  }
  for (int j = 0; j < MW; ++j)
    for (int r = 0; r < NX; ++r) out[j + r * ldo] = hsum(acc[j][r]);
}

constexpr int kMicroW = 3, kMicroX = 4;
using MicroFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t);
template <int MW>
constexpr MicroFn kMicroRow[kMicroX] = {micro<MW, 1>, micro<MW, 2>, micro<MW, 3>, micro<MW, 4>};
constexpr const MicroFn* kMicro[kMicroW] = {kMicroRow<1>, kMicroRow<2>, kMicroRow<3>};

void gemm(const float* w, int64_t ldw, int mw, const float* x, int64_t ldx, int nx, int64_t cols,
          float* out, int64_t ldo) {
  for (int r = 0; r < nx; r += kMicroX) {
    const int nr = nx - r < kMicroX ? nx - r : kMicroX;
    for (int j = 0; j < mw; j += kMicroW) {
      const int nj = mw - j < kMicroW ? mw - j : kMicroW;
      kMicro[nj - 1][nr - 1](w + j * ldw, ldw, x + r * ldx, ldx, cols, out + j + r * ldo, ldo);
    }
  }
}

template <class Dec>
void set(FloatActKernels* k, BlockFormat f) {
  k->decode[f] = decode_row<Dec>;
  k->direct[f] = direct<Dec>;
}

}  // namespace

void use_avx2_float_kernels(FloatActKernels* k) {
  k->direct_rows = kDirectRows;
  k->gemm = gemm;
  set<DecQ4_0>(k, kQ4_0);
  set<DecQ4_1>(k, kQ4_1);
  k->direct[kQ4_1] = direct_q4_1;
  set<DecQ8_0>(k, kQ8_0);
  set<DecQ45_K<false>>(k, kQ4_K);
  set<DecQ45_K<true>>(k, kQ5_K);
  set<DecQ6_K>(k, kQ6_K);
}

}  // namespace nc::qk

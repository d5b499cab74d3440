// AVX-512 (F + BW + VL) float-activation kernels (quant_fdot.h); this file alone is compiled with
// the AVX-512 flags, and everything but use_avx512_float_kernels() has internal linkage (as
// quant_dot_avx2.cc, which says why). cpu_isa.h allows the path only where cpuid and xgetbv say
// the CPU and the OS support it.
//
// As the AVX2 unit, one width apart: each decoder turns 32 values of a block into two vectors of
// 16 floats equal to dequantize()'s; the direct kernel (four weight rows in registers, one x row),
// decode_row and the gemm all accumulate one 16-lane vector per output with fma(w, x, acc) in
// increasing k, then the same fixed reduction: the same bits for a row whichever kernel serves it.
// Every block format has its decoder here, so the whole float-activation table of this path is
// of one width (a 16-lane gemm must never meet an 8-lane direct kernel).
#include "backend/cpu/quant_fdot.h"

#if !defined(NC_HAVE_AVX512_KERNELS)
namespace nc::qk {
void use_avx512_float_kernels(FloatActKernels*) {}  // cpu_isa.h never offers the path
}  // namespace nc::qk
#else
// GCC 12's AVX-512 headers pass _mm256_undefined_pd() to the extract builtins, which
// -W(maybe-)uninitialized reports at every inlined call (a header bug: the value is never read).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "backend/cpu/quant_blocks.h"

namespace nc::qk {
namespace {

float h2f(uint16_t h) {
  return _cvtsh_ss(h);
}
__m512 splat_h(uint16_t h) {
  return _mm512_set1_ps(h2f(h));
}
__m512i bytes_u32(const uint8_t* p) {  // 16 bytes, zero-extended to 16 int32
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
__m512 to_float(__m512i v) {
  return _mm512_cvtepi32_ps(v);
}

// The fixed reduction of 16 lanes: halves added, then quarters, pairs, and the last two.
float hsum16(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- decoders: group g of a block -> v[0..1] (values 32g .. 32g + 31, in order) ----

struct DecQ4_0 {
  using Block = BlockQ4_0;
  static constexpr int kValues = kQK, kGroups = 1;
  static void decode(const Block& b, int, __m512* v) {
    const __m512 d = splat_h(b.d);
    const __m512i a = bytes_u32(b.qs), eight = _mm512_set1_epi32(8);
    v[0] = _mm512_mul_ps(
        d, to_float(_mm512_sub_epi32(_mm512_and_si512(a, _mm512_set1_epi32(0x0F)), eight)));
    v[1] = _mm512_mul_ps(d, to_float(_mm512_sub_epi32(_mm512_srli_epi32(a, 4), eight)));
  }
};

struct DecQ4_1 {
  using Block = BlockQ4_1;
  static constexpr int kValues = kQK, kGroups = 1;
  static void decode(const Block& b, int, __m512* v) {
    const __m512 d = splat_h(b.d), m = splat_h(b.m);
    const __m512i a = bytes_u32(b.qs);
    v[0] = _mm512_fmadd_ps(d, to_float(_mm512_and_si512(a, _mm512_set1_epi32(0x0F))), m);
    v[1] = _mm512_fmadd_ps(d, to_float(_mm512_srli_epi32(a, 4)), m);
  }
};

struct DecQ8_0 {
  using Block = BlockQ8_0;
  static constexpr int kValues = kQK, kGroups = 1;
  static void decode(const Block& b, int, __m512* v) {
    const __m512 d = splat_h(b.d);
    for (int c = 0; c < 2; ++c) {
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16 * c));
      v[c] = _mm512_mul_ps(to_float(_mm512_cvtepi8_epi32(q)), d);
    }
  }
};

template <bool kFive>
struct DecQ45_K {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  static constexpr int kValues = kQKK, kGroups = 8;
  static void decode(const Block& b, int g, __m512* v) {
    int sc, mn;
    k_scale_min(b.scales, g, &sc, &mn);
    const __m512 dl = _mm512_set1_ps(h2f(b.d) * float(sc));
    const __m512 ml = _mm512_set1_ps(-(h2f(b.dmin) * float(mn)));
    const uint8_t* q = b.qs + 32 * (g / 2);
    const __m128i shift = _mm_cvtsi32_si128(4 * (g % 2));
    for (int c = 0; c < 2; ++c) {
      __m512i x =
          _mm512_and_si512(_mm512_srl_epi32(bytes_u32(q + 16 * c), shift), _mm512_set1_epi32(0x0F));
      if constexpr (kFive) {
        const __m512i h = _mm512_srl_epi32(bytes_u32(b.qh + 16 * c), _mm_cvtsi32_si128(g));
        x = _mm512_or_si512(x, _mm512_slli_epi32(_mm512_and_si512(h, _mm512_set1_epi32(1)), 4));
      }
      v[c] = _mm512_fmadd_ps(dl, to_float(x), ml);
    }
  }
};

// Group c holds sub-blocks 2c and 2c + 1: one vector each, each its own scale.
struct DecQ6_K {
  using Block = BlockQ6_K;
  static constexpr int kValues = kQKK, kGroups = 8;
  static void decode(const Block& b, int c, __m512* v) {
    const int g = c / 4, part = c % 4;
    const uint8_t* ql = b.ql + 64 * g + 32 * (part % 2);
    const uint8_t* qh = b.qh + 32 * g;
    const __m128i lshift = _mm_cvtsi32_si128(4 * (part / 2)), hshift = _mm_cvtsi32_si128(2 * part);
    const float d = h2f(b.d);
    for (int k = 0; k < 2; ++k) {
      const __m512i lo = _mm512_and_si512(_mm512_srl_epi32(bytes_u32(ql + 16 * k), lshift),
                                          _mm512_set1_epi32(0x0F));
      const __m512i hi =
          _mm512_and_si512(_mm512_srl_epi32(bytes_u32(qh + 16 * k), hshift), _mm512_set1_epi32(3));
      const __m512i q =
          _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), _mm512_set1_epi32(32));
      v[k] = _mm512_mul_ps(_mm512_set1_ps(d * float(b.scales[2 * c + k])), to_float(q));
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
  __m512 v[2];
  for (int64_t i = 0; i < cols / Dec::kValues; ++i)
    for (int g = 0; g < Dec::kGroups; ++g, out += 32) {
      Dec::decode(block_of<Dec>(w, 0, 0, i), g, v);
      _mm512_storeu_ps(out, v[0]);
      _mm512_storeu_ps(out + 16, v[1]);
    }
}

constexpr int kDirectRows = 4;

template <class Dec>
void direct(const void* w, int64_t ws, const float* x, int64_t cols, float* out) {
  __m512 acc[kDirectRows];
  for (auto& a : acc) a = _mm512_setzero_ps();
  for (int64_t i = 0; i < cols / Dec::kValues; ++i)
    for (int g = 0; g < Dec::kGroups; ++g) {
      const float* xp = x + i * Dec::kValues + 32 * g;
      const __m512 x0 = _mm512_loadu_ps(xp), x1 = _mm512_loadu_ps(xp + 16);
      for (int j = 0; j < kDirectRows; ++j) {
        __m512 v[2];
        Dec::decode(block_of<Dec>(w, ws, j, i), g, v);
        acc[j] = _mm512_fmadd_ps(v[0], x0, acc[j]);
        acc[j] = _mm512_fmadd_ps(v[1], x1, acc[j]);
      }
    }
  for (int j = 0; j < kDirectRows; ++j) out[j] = hsum16(acc[j]);
}

// ---- gemm over decoded rows (cols a multiple of 32, so of 16) ----

template <int MW, int NX>
void micro(const float* w, int64_t ldw, const float* x, int64_t ldx, int64_t cols, float* out,
           int64_t ldo) {
  __m512 acc[MW][NX];
  for (int j = 0; j < MW; ++j)
    for (int r = 0; r < NX; ++r) acc[j][r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < cols; k += 16) {
    __m512 wv[MW];
    for (int j = 0; j < MW; ++j) wv[j] = _mm512_loadu_ps(w + j * ldw + k);
    for (int r = 0; r < NX; ++r) {
      const __m512 xv = _mm512_loadu_ps(x + r * ldx + k);
      for (int j = 0; j < MW; ++j) acc[j][r] = _mm512_fmadd_ps(wv[j], xv, acc[j][r]);
    }
  }
  for (int j = 0; j < MW; ++j)
    for (int r = 0; r < NX; ++r) out[j + r * ldo] = hsum16(acc[j][r]);
}

constexpr int kMicroW = 4, kMicroX = 4;  // 16 accumulators of the 32 zmm registers
using MicroFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t);
template <int MW>
constexpr MicroFn kMicroRow[kMicroX] = {micro<MW, 1>, micro<MW, 2>, micro<MW, 3>, micro<MW, 4>};
constexpr const MicroFn* kMicro[kMicroW] = {kMicroRow<1>, kMicroRow<2>, kMicroRow<3>, kMicroRow<4>};

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

void use_avx512_float_kernels(FloatActKernels* k) {
  k->direct_rows = kDirectRows;
  k->gemm = gemm;
  set<DecQ4_0>(k, kQ4_0);
  set<DecQ4_1>(k, kQ4_1);
  set<DecQ8_0>(k, kQ8_0);
  set<DecQ45_K<false> >(k, kQ4_K);
  set<DecQ45_K<true> >(k, kQ5_K);
  set<DecQ6_K>(k, kQ6_K);
}

}  // namespace nc::qk
#endif  // NC_HAVE_AVX512_KERNELS

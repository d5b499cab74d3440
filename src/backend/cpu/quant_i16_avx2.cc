// AVX2 + FMA + F16C int16-activation kernels (quant_i16.h); compiled with those flags, internal
// linkage except use_avx2_i16_kernels() (as quant_dot_avx2.cc, which says why).
//
// Each format has a decoder that widens one 32-value unit of a weight row (a Q4_0/Q4_1/Q8_0
// block, a K-format sub-block) to two vectors of 16 int16 (elements 0..15 and 16..31) and gives
// its float factors. _mm256_madd_epi16 of the halves with the x halves gives lane l the products
// of elements 2l, 2l + 1 (low half) and 2l + 16, 2l + 17 (high half): quant_i16.h's P[l]. The
// tile kernels then take exactly quant_i16.h's float steps per output, so they equal the portable
// kernels bit for bit at any tile shape.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "backend/cpu/quant_avx2_helpers.h"
#include "backend/cpu/quant_i16.h"

namespace nc::qk {
namespace {

// ---- the quantizer (bit-identical to the portable one) ----

float amax32(const float* x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps();
  for (int i = 0; i < kQK; i += 8)
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

__m256i round_i32(__m256 v, __m256 id) {
  return _mm256_cvtps_epi32(
      _mm256_round_ps(_mm256_mul_ps(v, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

void quantize(const float* x, int64_t cols, void* out) {
  auto* b = static_cast<XBlock16*>(out);
  for (int64_t i = 0; i < cols / kQK; ++i, x += kQK, ++b) {
    const float d = amax32(x) / 32767.0f;
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    // packs work within 128-bit lanes: restore the order with a 64-bit permute.
    const __m256i i0 = round_i32(v0, id), i1 = round_i32(v1, id);
    const __m256i i2 = round_i32(v2, id), i3 = round_i32(v3, id);
    const int sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    const __m256i p0 = _mm256_packs_epi32(i0, i1), p1 = _mm256_packs_epi32(i2, i3);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(b->q), _mm256_permute4x64_epi64(p0, 0xD8));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(b->q + 16), _mm256_permute4x64_epi64(p1, 0xD8));
    b->d = d;
    b->s = hsum(_mm256_add_ps(_mm256_add_ps(_mm256_add_ps(v0, v1), v2), v3));
    b->e = b->s - d * float(sum);
  }
}

// ---- decoders: unit g of block b -> lo, hi (int16), the factor(s) and the min factor ----

__m256i u8_16(const uint8_t* p) {  // 16 bytes, zero-extended to 16 int16
  return _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
__m256i nib() {
  return _mm256_set1_epi16(0x0F);
}

struct DecQ4_0 {
  using Block = BlockQ4_0;
  static constexpr int kUnits = 1;
  static constexpr bool kMin = false, kSplit = false;
  static void load(const Block& b, int, __m256i* lo, __m256i* hi) {
    const __m256i v = u8_16(b.qs), eight = _mm256_set1_epi16(8);
    *lo = _mm256_sub_epi16(_mm256_and_si256(v, nib()), eight);
    *hi = _mm256_sub_epi16(_mm256_srli_epi16(v, 4), eight);
  }
  static void scales(const Block& b, int, float* fa, float*, float*) { *fa = h2f(b.d); }
};

struct DecQ4_1 {
  using Block = BlockQ4_1;
  static constexpr int kUnits = 1;
  static constexpr float kCentre = kCentreQ4;
  static constexpr bool kMin = true, kSplit = false;
  static void load(const Block& b, int, __m256i* lo, __m256i* hi) {
    const __m256i v = u8_16(b.qs);
    *lo = _mm256_and_si256(v, nib());
    *hi = _mm256_srli_epi16(v, 4);
  }
  static void scales(const Block& b, int, float* fa, float*, float* m) {
    *fa = h2f(b.d);
    *m = h2f(b.m);
  }
};

struct DecQ8_0 {
  using Block = BlockQ8_0;
  static constexpr int kUnits = 1;
  static constexpr bool kMin = false, kSplit = false;
  static void load(const Block& b, int, __m256i* lo, __m256i* hi) {
    *lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs)));
    *hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16)));
  }
  static void scales(const Block& b, int, float* fa, float*, float*) { *fa = h2f(b.d); }
};

template <bool kFive>
struct DecQ45_K {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  static constexpr int kUnits = 8;
  static constexpr float kCentre = kFive ? kCentreQ5 : kCentreQ4;
  static constexpr bool kMin = true, kSplit = false;
  static void load(const Block& b, int g, __m256i* lo, __m256i* hi) {
    const uint8_t* q = b.qs + 32 * (g / 2);
    const __m128i sh = _mm_cvtsi32_si128(4 * (g % 2));
    *lo = _mm256_and_si256(_mm256_srl_epi16(u8_16(q), sh), nib());
    *hi = _mm256_and_si256(_mm256_srl_epi16(u8_16(q + 16), sh), nib());
    if constexpr (kFive) {
      const __m128i hs = _mm_cvtsi32_si128(g);
      const __m256i one = _mm256_set1_epi16(1);
      const __m256i h0 = _mm256_and_si256(_mm256_srl_epi16(u8_16(b.qh), hs), one);
      const __m256i h1 = _mm256_and_si256(_mm256_srl_epi16(u8_16(b.qh + 16), hs), one);
      *lo = _mm256_or_si256(*lo, _mm256_slli_epi16(h0, 4));
      *hi = _mm256_or_si256(*hi, _mm256_slli_epi16(h1, 4));
    }
  }
  static void scales(const Block& b, int g, float* fa, float*, float* m) {
    int sc, mn;
    k_scale_min(b.scales, g, &sc, &mn);
    *fa = h2f(b.d) * float(sc);
    *m = -(h2f(b.dmin) * float(mn));
  }
};

struct DecQ6_K {
  using Block = BlockQ6_K;
  static constexpr int kUnits = 8;
  static constexpr bool kMin = false, kSplit = true;
  static void load(const Block& b, int c, __m256i* lo, __m256i* hi) {
    const int g = c / 4, part = c % 4;
    const uint8_t* ql = b.ql + 64 * g + 32 * (part % 2);
    const uint8_t* qh = b.qh + 32 * g;
    const __m128i ls = _mm_cvtsi32_si128(4 * (part / 2)), hs = _mm_cvtsi32_si128(2 * part);
    const __m256i three = _mm256_set1_epi16(3), off = _mm256_set1_epi16(32);
    for (int h = 0; h < 2; ++h) {
      const __m256i l = _mm256_and_si256(_mm256_srl_epi16(u8_16(ql + 16 * h), ls), nib());
      const __m256i u = _mm256_and_si256(_mm256_srl_epi16(u8_16(qh + 16 * h), hs), three);
      (h == 0 ? *lo : *hi) = _mm256_sub_epi16(_mm256_or_si256(l, _mm256_slli_epi16(u, 4)), off);
    }
  }
  static void scales(const Block& b, int c, float* fa, float* fb, float*) {
    const float d = h2f(b.d);
    *fa = d * float(b.scales[2 * c]);
    *fb = d * float(b.scales[2 * c + 1]);
  }
};

// ---- tiles: MW weight rows (ws bytes apart) by NX x rows (xs bytes apart) ----

template <class Dec, int MW, int NX>
void tile(const void* w, int64_t ws, const void* x, int64_t xs, int64_t cols, float* out,
          int64_t os) {
  using Block = typename Dec::Block;
  __m256 acc[MW][NX];
  float mins[MW][NX], cen[MW][NX];
  for (int j = 0; j < MW; ++j)
    for (int r = 0; r < NX; ++r) acc[j][r] = _mm256_setzero_ps(), mins[j][r] = cen[j][r] = 0.0f;
  const XBlock16* y[NX];
  for (int r = 0; r < NX; ++r)
    y[r] = reinterpret_cast<const XBlock16*>(static_cast<const uint8_t*>(x) + r * xs);
  for (int64_t u = 0; u < cols / kQK; ++u) {
    const int64_t i = u / Dec::kUnits;
    const int g = int(u % Dec::kUnits);
    for (int j = 0; j < MW; ++j) {
      const Block& b = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(w) + j * ws)[i];
      __m256i lo, hi;
      Dec::load(b, g, &lo, &hi);
      float fa = 0, fb = 0, m = 0;
      Dec::scales(b, g, &fa, &fb, &m);
      for (int r = 0; r < NX; ++r) {
        const XBlock16& yb = y[r][u];
        const __m256i plo = _mm256_madd_epi16(lo, load256(yb.q));
        const __m256i phi = _mm256_madd_epi16(hi, load256(yb.q + 16));
        if constexpr (Dec::kSplit) {
          acc[j][r] =
              _mm256_fmadd_ps(_mm256_set1_ps(fa * yb.d), _mm256_cvtepi32_ps(plo), acc[j][r]);
          acc[j][r] =
              _mm256_fmadd_ps(_mm256_set1_ps(fb * yb.d), _mm256_cvtepi32_ps(phi), acc[j][r]);
        } else {
          const __m256 p = _mm256_cvtepi32_ps(_mm256_add_epi32(plo, phi));
          acc[j][r] = _mm256_fmadd_ps(_mm256_set1_ps(fa * yb.d), p, acc[j][r]);
        }
        if constexpr (Dec::kMin) {
          mins[j][r] = mins[j][r] + m * yb.s;
          cen[j][r] = cen[j][r] + fa * (Dec::kCentre * yb.e);
        }
      }
    }
  }
  for (int j = 0; j < MW; ++j)
    for (int r = 0; r < NX; ++r)
      out[j + r * os] = Dec::kMin ? (hsum(acc[j][r]) + mins[j][r]) + cen[j][r] : hsum(acc[j][r]);
}

template <class Dec>
void rows(const void* w, const void* x, int64_t xs, int nx, int64_t cols, float* out, int64_t os) {
  const auto* xb = static_cast<const uint8_t*>(x);
  for (; nx >= 4; nx -= 4, xb += 4 * xs, out += 4 * os)
    tile<Dec, 1, 4>(w, 0, xb, xs, cols, out, os);
  if (nx == 3) tile<Dec, 1, 3>(w, 0, xb, xs, cols, out, os);
  if (nx == 2) tile<Dec, 1, 2>(w, 0, xb, xs, cols, out, os);
  if (nx == 1) tile<Dec, 1, 1>(w, 0, xb, xs, cols, out, os);
}

template <class Dec>
void four_w(const void* w, int64_t ws, const void* x, int64_t cols, float* out) {
  tile<Dec, 4, 1>(w, ws, x, 0, cols, out, 0);
}

// Q4_1 and Q8_0 at four weight rows by one x row (the decode step's shape), with the scale work
// of the four rows in one vector: their f16 (d, m) pairs (Q8_0: d) convert in one instruction and
// multiply (xd, xs) lane-wise; each lane is the product tile<> forms alone, and the min sums
// accumulate lane-wise as tile<>'s scalar sums do: the same bits.
void q4_1_four_w(const void* w, int64_t ws, const void* x, int64_t cols, float* out) {
  const auto* y = static_cast<const XBlock16*>(x);
  const auto* w0 = static_cast<const uint8_t*>(w);
  const __m256i idx[4] = {_mm256_set1_epi32(0), _mm256_set1_epi32(2), _mm256_set1_epi32(4),
                          _mm256_set1_epi32(6)};
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  __m256 mins = _mm256_setzero_ps();  // lanes 1, 3, 5, 7: the four rows' min sums
  __m256 cen = _mm256_setzero_ps();   // lanes 0, 2, 4, 6: their centring sums
  for (int64_t i = 0; i < cols / kQK; ++i) {
    const BlockQ4_1* b[4];
    int32_t dm[4];
    for (int j = 0; j < 4; ++j) {
      b[j] = reinterpret_cast<const BlockQ4_1*>(w0 + j * ws) + i;
      std::memcpy(&dm[j], &b[j]->d, 4);  // d and m, adjacent halves
    }
    const __m256 dm8 = _mm256_cvtph_ps(_mm_setr_epi32(dm[0], dm[1], dm[2], dm[3]));
    const __m256 yds =
        _mm256_setr_ps(y[i].d, y[i].s, y[i].d, y[i].s, y[i].d, y[i].s, y[i].d, y[i].s);
    const __m256 prod = _mm256_mul_ps(dm8, yds);
    mins = _mm256_add_ps(mins, prod);
    cen = _mm256_add_ps(cen, _mm256_mul_ps(dm8, _mm256_set1_ps(kCentreQ4 * y[i].e)));
    const __m256i xlo = load256(y[i].q), xhi = load256(y[i].q + 16);
    for (int j = 0; j < 4; ++j) {
      __m256i lo, hi;
      DecQ4_1::load(*b[j], 0, &lo, &hi);
      const __m256i p = _mm256_add_epi32(_mm256_madd_epi16(lo, xlo), _mm256_madd_epi16(hi, xhi));
      acc[j] =
          _mm256_fmadd_ps(_mm256_permutevar8x32_ps(prod, idx[j]), _mm256_cvtepi32_ps(p), acc[j]);
    }
  }
  float m[8], c[8];
  _mm256_storeu_ps(m, mins);
  _mm256_storeu_ps(c, cen);
  for (int j = 0; j < 4; ++j) out[j] = (hsum(acc[j]) + m[2 * j + 1]) + c[2 * j];
}

void q8_0_four_w(const void* w, int64_t ws, const void* x, int64_t cols, float* out) {
  const auto* y = static_cast<const XBlock16*>(x);
  const auto* w0 = static_cast<const uint8_t*>(w);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  for (int64_t i = 0; i < cols / kQK; ++i) {
    const BlockQ8_0* b[4];
    uint16_t d[4];
    for (int j = 0; j < 4; ++j) {
      b[j] = reinterpret_cast<const BlockQ8_0*>(w0 + j * ws) + i;
      d[j] = b[j]->d;
    }
    const __m128 d4 = _mm_cvtph_ps(
        _mm_setr_epi16(short(d[0]), short(d[1]), short(d[2]), short(d[3]), 0, 0, 0, 0));
    const __m256 prod = _mm256_castps128_ps256(_mm_mul_ps(d4, _mm_set1_ps(y[i].d)));
    const __m256i xlo = load256(y[i].q), xhi = load256(y[i].q + 16);
    for (int j = 0; j < 4; ++j) {
      __m256i lo, hi;
      DecQ8_0::load(*b[j], 0, &lo, &hi);
      const __m256i p = _mm256_add_epi32(_mm256_madd_epi16(lo, xlo), _mm256_madd_epi16(hi, xhi));
      acc[j] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(prod, _mm256_set1_epi32(j)),
                               _mm256_cvtepi32_ps(p), acc[j]);
    }
  }
  for (int j = 0; j < 4; ++j) out[j] = hsum(acc[j]);
}

// One weight row by four x rows interleaved (XBlock16x4): the four rows' factors f * xd_r, min
// products m * xs_r and centring terms f * (c * xe_r) in one 4-lane operation each: per row the
// same products and sums as tile<>.
template <class Dec>
void x4(const void* w, const void* x4, int64_t cols, float* out, int64_t os) {
  static_assert(Dec::kUnits == 1 && !Dec::kSplit);
  const auto* b = static_cast<const typename Dec::Block*>(w);
  const auto* y = static_cast<const XBlock16x4*>(x4);
  const __m256i idx[4] = {_mm256_set1_epi32(0), _mm256_set1_epi32(1), _mm256_set1_epi32(2),
                          _mm256_set1_epi32(3)};
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  __m128 mins = _mm_setzero_ps(), cen = _mm_setzero_ps();
  for (int64_t i = 0; i < cols / kQK; ++i) {
    __m256i lo, hi;
    Dec::load(b[i], 0, &lo, &hi);
    float fa = 0, fb = 0, m = 0;
    Dec::scales(b[i], 0, &fa, &fb, &m);
    const __m128 f4 = _mm_set1_ps(fa);
    const __m256 ds = _mm256_castps128_ps256(_mm_mul_ps(f4, _mm_loadu_ps(y[i].d)));
    if constexpr (Dec::kMin) {
      mins = _mm_add_ps(mins, _mm_mul_ps(_mm_set1_ps(m), _mm_loadu_ps(y[i].s)));
      const __m128 ce = _mm_mul_ps(_mm_set1_ps(Dec::kCentre), _mm_loadu_ps(y[i].e));
      cen = _mm_add_ps(cen, _mm_mul_ps(f4, ce));
    }
    for (int r = 0; r < 4; ++r) {
      const __m256i p = _mm256_add_epi32(_mm256_madd_epi16(lo, load256(y[i].q[r])),
                                         _mm256_madd_epi16(hi, load256(y[i].q[r] + 16)));
      acc[r] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(ds, idx[r]), _mm256_cvtepi32_ps(p), acc[r]);
    }
  }
  float mn[4], cn[4];
  _mm_storeu_ps(mn, mins);
  _mm_storeu_ps(cn, cen);
  for (int r = 0; r < 4; ++r)
    out[r * os] = Dec::kMin ? (hsum(acc[r]) + mn[r]) + cn[r] : hsum(acc[r]);
}

template <class Dec>
void set(I16Kernels* k, BlockFormat f) {
  k->dot[f] = rows<Dec>;
  k->dot4[f] = four_w<Dec>;
}

}  // namespace

void use_avx2_i16_kernels(I16Kernels* k) {
  k->quantize = quantize;
  set<DecQ4_0>(k, kQ4_0);
  set<DecQ4_1>(k, kQ4_1);
  set<DecQ8_0>(k, kQ8_0);
  k->dot4[kQ4_1] = q4_1_four_w;
  k->dot4[kQ8_0] = q8_0_four_w;
  k->dotx4[kQ4_0] = x4<DecQ4_0>;
  k->dotx4[kQ4_1] = x4<DecQ4_1>;
  k->dotx4[kQ8_0] = x4<DecQ8_0>;
  set<DecQ45_K<false>>(k, kQ4_K);
  set<DecQ45_K<true>>(k, kQ5_K);
  set<DecQ6_K>(k, kQ6_K);
}

}  // namespace nc::qk

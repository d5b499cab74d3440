// AVX2 + FMA + F16C kernels (this file alone is compiled with -mavx2 -mfma -mf16c). It includes
// only <immintrin.h>, <cstdint>, <cstring> and plain headers, and everything but
// use_avx2_kernels() has internal linkage: an inline function or template shared with other units
// would leave a COMDAT copy built with AVX2 that the linker could pick for them.
//
// Kernels that take several x rows (NX) decode each weight block once and then perform, per x
// row, exactly the operations of NX = 1 (batch invariance). The 32-value formats accumulate one
// float vector per row across blocks; the K formats sum each super-block exactly in integers and
// then take the portable kernel's float steps, so they agree with it bit for bit.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/quant_avx2_helpers.h"
#include "backend/cpu/quant_dot.h"

namespace nc::qk {
namespace {

constexpr int kMaxRows = 4;

// ---- activation quantizers (bit-identical to the portable ones) ----

float amax_of(const float* x, int n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8)
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

__m256i round_to_i32(const float* x, __m256 id) {
  const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x), id);
  return _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// Quantizes 32 values with 1/d = id into q; sums[0], sums[1] get the sums of q over each half.
void quantize32_values(const float* x, __m256 id, int8_t* q, int* sums) {
  const __m256i a = round_to_i32(x, id), b = round_to_i32(x + 8, id);
  const __m256i c = round_to_i32(x + 16, id), d = round_to_i32(x + 24, id);
  sums[0] = hsum_i32(_mm256_add_epi32(a, b));
  sums[1] = hsum_i32(_mm256_add_epi32(c, d));
  // packs work within 128-bit lanes: restore the order with a final permute.
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  const __m256i all = _mm256_packs_epi16(ab, cd);
  const __m256i ordered =
      _mm256_permutevar8x32_epi32(all, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), ordered);
}

void quantize32(const float* x, int64_t cols, void* out) {
  auto* b = static_cast<XBlock32*>(out);
  for (int64_t i = 0; i < cols / kQK; ++i, x += kQK, ++b) {
    const float d = amax_of(x, kQK) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int sums[2];
    quantize32_values(x, _mm256_set1_ps(id), b->q, sums);
    b->d = d;
    b->s = d * float(sums[0] + sums[1]);
  }
}

void quantize256(const float* x, int64_t cols, void* out) {
  auto* b = static_cast<XBlock256*>(out);
  for (int64_t i = 0; i < cols / kQKK; ++i, x += kQKK, ++b) {
    const float d = amax_of(x, kQKK) / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    for (int g = 0; g < kQKK / 32; ++g) {
      int sums[2];
      quantize32_values(x + 32 * g, id, b->q + 32 * g, sums);
      b->bsums[2 * g] = int16_t(sums[0]);
      b->bsums[2 * g + 1] = int16_t(sums[1]);
    }
    b->d = d;
  }
}

const XBlock32* xrow32(const void* x, int64_t stride, int i) {
  return reinterpret_cast<const XBlock32*>(static_cast<const uint8_t*>(x) + i * stride);
}
const XBlock256* xrow256(const void* x, int64_t stride, int i) {
  return reinterpret_cast<const XBlock256*>(static_cast<const uint8_t*>(x) + i * stride);
}

// ---- 32-value formats ----
//
// Each kernel is a tile of MW weight rows (ws bytes apart) by NX x rows; out[j + r * os] gets
// weight row j times x row r. Every (j, r) pair has its own accumulator chain that performs the
// same operations in the same order whatever MW and NX are (so a tile of four weight rows is bit
// for bit four calls of one row): MW > 1 only gives the core independent chains to overlap, which
// matters at NX = 1, where one chain's fused-add latency would otherwise bound the kernel.

template <typename Block>
const Block& wblock(const void* w, int64_t ws, int j, int64_t i) {
  return reinterpret_cast<const Block*>(static_cast<const uint8_t*>(w) + j * ws)[i];
}

template <int MW, int NX>
void q4_1_tile(const void* w, int64_t ws, const void* x, int64_t xs, int64_t cols, float* out,
               int64_t os) {
  __m256 acc[MW][NX];
  float mins[MW][NX];
  for (int j = 0; j < MW; ++j)
    for (int r = 0; r < NX; ++r) acc[j][r] = _mm256_setzero_ps(), mins[j][r] = 0.0f;
  for (int64_t i = 0; i < cols / kQK; ++i) {
    for (int j = 0; j < MW; ++j) {
      const BlockQ4_1& b = wblock<BlockQ4_1>(w, ws, j, i);
      const __m256i q = unpack_nibbles(b.qs);
      const float d = h2f(b.d), m = h2f(b.m);
      for (int r = 0; r < NX; ++r) {
        const XBlock32& y = xrow32(x, xs, r)[i];
        const __m256 s = _mm256_cvtepi32_ps(dot_quads(q, load256(y.q)));
        acc[j][r] = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), s, acc[j][r]);
        mins[j][r] += m * y.s;
      }
    }
  }
  for (int j = 0; j < MW; ++j)
    for (int r = 0; r < NX; ++r) out[j + r * os] = hsum(acc[j][r]) + mins[j][r];
}

template <int MW, int NX>
void q4_0_tile(const void* w, int64_t ws, const void* x, int64_t xs, int64_t cols, float* out,
               int64_t os) {
  __m256 acc[MW][NX];
  for (int j = 0; j < MW; ++j)
    for (int r = 0; r < NX; ++r) acc[j][r] = _mm256_setzero_ps();
  for (int64_t i = 0; i < cols / kQK; ++i) {
    for (int j = 0; j < MW; ++j) {
      const BlockQ4_0& b = wblock<BlockQ4_0>(w, ws, j, i);
      const __m256i q = _mm256_sub_epi8(unpack_nibbles(b.qs), _mm256_set1_epi8(8));
      const float d = h2f(b.d);
      for (int r = 0; r < NX; ++r) {
        const XBlock32& y = xrow32(x, xs, r)[i];
        const __m256 s = _mm256_cvtepi32_ps(dot_quads_signed(q, load256(y.q)));
        acc[j][r] = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), s, acc[j][r]);
      }
    }
  }
  for (int j = 0; j < MW; ++j)
    for (int r = 0; r < NX; ++r) out[j + r * os] = hsum(acc[j][r]);
}

template <int MW, int NX>
void q8_0_tile(const void* w, int64_t ws, const void* x, int64_t xs, int64_t cols, float* out,
               int64_t os) {
  __m256 acc[MW][NX];
  for (int j = 0; j < MW; ++j)
    for (int r = 0; r < NX; ++r) acc[j][r] = _mm256_setzero_ps();
  for (int64_t i = 0; i < cols / kQK; ++i) {
    for (int j = 0; j < MW; ++j) {
      const BlockQ8_0& b = wblock<BlockQ8_0>(w, ws, j, i);
      const __m256i q = load256(b.qs);
      const __m256i aq = _mm256_sign_epi8(q, q);
      const float d = h2f(b.d);
      for (int r = 0; r < NX; ++r) {
        const XBlock32& y = xrow32(x, xs, r)[i];
        const __m256i sq = _mm256_sign_epi8(load256(y.q), q);
        const __m256 s = _mm256_cvtepi32_ps(dot_quads(aq, sq));
        acc[j][r] = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), s, acc[j][r]);
      }
    }
  }
  for (int j = 0; j < MW; ++j)
    for (int r = 0; r < NX; ++r) out[j + r * os] = hsum(acc[j][r]);
}

// One weight row by NX x rows (the DotFn shape), and four weight rows by one x row (Dot4Fn).
#define NC_TILE_ENTRIES(name)                                                             \
  template <int NX>                                                                       \
  void name##_rows(const void* w, const void* x, int64_t xs, int64_t cols, float* out,    \
                   int64_t os) {                                                          \
    name##_tile<1, NX>(w, 0, x, xs, cols, out, os);                                       \
  }                                                                                       \
  [[maybe_unused]] void name##_4w(const void* w, int64_t ws, const void* x, int64_t cols, \
                                  float* out) {                                           \
    name##_tile<4, 1>(w, ws, x, 0, cols, out, 0);                                         \
  }
NC_TILE_ENTRIES(q4_1)

NC_TILE_ENTRIES(q4_0)
NC_TILE_ENTRIES(q8_0)
#undef NC_TILE_ENTRIES

// ---- float formats: two accumulators of 8 lanes per row, a scalar tail ----

__m256 load_f32(const void* w, int64_t k) {
  return _mm256_loadu_ps(static_cast<const float*>(w) + k);
}
__m256 load_f16(const void* w, int64_t k) {
  return _mm256_cvtph_ps(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + k)));
}
__m256 load_bf16(const void* w, int64_t k) {
  const __m128i h =
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + k));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
float one_f32(const void* w, int64_t k) {
  float v;
  std::memcpy(&v, static_cast<const float*>(w) + k, 4);
  return v;
}
float one_f16(const void* w, int64_t k) {
  return h2f(static_cast<const uint16_t*>(w)[k]);
}
float one_bf16(const void* w, int64_t k) {
  const uint32_t bits = uint32_t(static_cast<const uint16_t*>(w)[k]) << 16;
  float v;
  std::memcpy(&v, &bits, 4);
  return v;
}

template <int NX, __m256 (*Load)(const void*, int64_t), float (*One)(const void*, int64_t)>
void float_rows(const void* w, const void* x, int64_t xs, int64_t cols, float* out, int64_t os) {
  __m256 a0[NX], a1[NX];
  const float* xr[NX];
  for (int r = 0; r < NX; ++r) {
    a0[r] = a1[r] = _mm256_setzero_ps();
    xr[r] = reinterpret_cast<const float*>(static_cast<const uint8_t*>(x) + r * xs);
  }
  int64_t k = 0;
  for (; k + 16 <= cols; k += 16) {
    const __m256 w0 = Load(w, k), w1 = Load(w, k + 8);
    for (int r = 0; r < NX; ++r) {
      a0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr[r] + k), a0[r]);
      a1[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr[r] + k + 8), a1[r]);
    }
  }
  for (int r = 0; r < NX; ++r) {
    float s = hsum(_mm256_add_ps(a0[r], a1[r]));
    for (int64_t j = k; j < cols; ++j) s += One(w, j) * xr[r][j];
    out[r * os] = s;
  }
}

// ---- K formats: exact integer sums per super-block, then the portable float steps ----

// Q4_K / Q5_K: sum over sub-blocks of sc * (q . xq) for one super-block and one x row.
template <bool kFive>
int q45_k_sumq(const uint8_t* qs, const uint8_t* qh, const int* sc, const int8_t* xq) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  __m256i sum = _mm256_setzero_si256();
  const __m256i hbits = kFive ? load256(qh) : _mm256_setzero_si256();
  for (int g = 0; g < 4; ++g) {
    const __m256i q = load256(qs + 32 * g);
    __m256i lo = _mm256_and_si256(q, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
    if (kFive) {
      const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(hbits, 2 * g), one);
      const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(hbits, 2 * g + 1), one);
      lo = _mm256_or_si256(lo, _mm256_slli_epi16(h0, 4));
      hi = _mm256_or_si256(hi, _mm256_slli_epi16(h1, 4));
    }
    const __m256i p0 = _mm256_madd_epi16(dot_pairs(lo, load256(xq + 64 * g)),
                                         _mm256_set1_epi16(int16_t(sc[2 * g])));
    const __m256i p1 = _mm256_madd_epi16(dot_pairs(hi, load256(xq + 64 * g + 32)),
                                         _mm256_set1_epi16(int16_t(sc[2 * g + 1])));
    sum = _mm256_add_epi32(sum, _mm256_add_epi32(p0, p1));
  }
  return hsum_i32(sum);
}

template <int NX, bool kFive, typename Block>
void q45_k_rows(const void* w, const void* x, int64_t xs, int64_t cols, float* out, int64_t os) {
  const auto* b = static_cast<const Block*>(w);
  float acc[NX] = {};
  for (int64_t i = 0; i < cols / kQKK; ++i) {
    int sc[8], mn[8];
    for (int j = 0; j < 8; ++j) k_scale_min(b[i].scales, j, &sc[j], &mn[j]);
    const uint8_t* qh = nullptr;
    if constexpr (kFive) qh = b[i].qh;
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int r = 0; r < NX; ++r) {
      const XBlock256& y = xrow256(x, xs, r)[i];
      const int sumq = q45_k_sumq<kFive>(b[i].qs, qh, sc, y.q);
      int summ = 0;
      for (int j = 0; j < 8; ++j) summ += mn[j] * (y.bsums[2 * j] + y.bsums[2 * j + 1]);
      acc[r] += d * y.d * float(sumq) - dmin * y.d * float(summ);
    }
  }
  for (int r = 0; r < NX; ++r) out[r * os] = acc[r];
}

// Q6_K: the six-bit values of one super-block as 8 vectors of 32 bytes (element order).
void q6_k_unpack(const BlockQ6_K& b, __m256i* q) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(3);
  for (int g = 0; g < 2; ++g) {
    const __m256i l0 = load256(b.ql + 64 * g), l1 = load256(b.ql + 64 * g + 32);
    const __m256i h = load256(b.qh + 32 * g);
    const __m256i lo[4] = {_mm256_and_si256(l0, low4), _mm256_and_si256(l1, low4),
                           _mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                           _mm256_and_si256(_mm256_srli_epi16(l1, 4), low4)};
    for (int c = 0; c < 4; ++c) {
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(h, 2 * c), two);
      q[4 * g + c] = _mm256_or_si256(lo[c], _mm256_slli_epi16(hi, 4));
    }
  }
}

template <int NX>
void q6_k_rows(const void* w, const void* x, int64_t xs, int64_t cols, float* out, int64_t os) {
  const auto* b = static_cast<const BlockQ6_K*>(w);
  float acc[NX] = {};
  for (int64_t i = 0; i < cols / kQKK; ++i) {
    __m256i q[8], sc[8];
    q6_k_unpack(b[i], q);
    for (int c = 0; c < 8; ++c)
      sc[c] = _mm256_set_m128i(_mm_set1_epi16(b[i].scales[2 * c + 1]),
                               _mm_set1_epi16(b[i].scales[2 * c]));
    const float d = h2f(b[i].d);
    for (int r = 0; r < NX; ++r) {
      const XBlock256& y = xrow256(x, xs, r)[i];
      __m256i sum = _mm256_setzero_si256();
      for (int c = 0; c < 8; ++c)
        sum =
            _mm256_add_epi32(sum, _mm256_madd_epi16(dot_pairs(q[c], load256(y.q + 32 * c)), sc[c]));
      int off = 0;
      for (int s = 0; s < 16; ++s) off += b[i].scales[s] * y.bsums[s];
      acc[r] += d * y.d * float(hsum_i32(sum) - 32 * off);
    }
  }
  for (int r = 0; r < NX; ++r) out[r * os] = acc[r];
}

// ---- dispatch on the number of x rows ----

using RowsFn = void (*)(const void*, const void*, int64_t, int64_t, float*, int64_t);

template <RowsFn F1, RowsFn F2, RowsFn F3, RowsFn F4>
void by_rows(const void* w, const void* x, int64_t xs, int nx, int64_t cols, float* out,
             int64_t os) {
  const auto* xb = static_cast<const uint8_t*>(x);
  for (; nx >= kMaxRows; nx -= kMaxRows, xb += kMaxRows * xs, out += kMaxRows * os)
    F4(w, xb, xs, cols, out, os);
  if (nx == 3) F3(w, xb, xs, cols, out, os);
  if (nx == 2) F2(w, xb, xs, cols, out, os);
  if (nx == 1) F1(w, xb, xs, cols, out, os);
}

#define NC_BY_ROWS(fn, ...)                                                   \
  by_rows<fn<1 __VA_OPT__(, ) __VA_ARGS__>, fn<2 __VA_OPT__(, ) __VA_ARGS__>, \
          fn<3 __VA_OPT__(, ) __VA_ARGS__>, fn<4 __VA_OPT__(, ) __VA_ARGS__>>

}  // namespace

void use_avx2_kernels(QuantKernels* k) {
  k->quantize32 = quantize32;
  k->quantize256 = quantize256;
  k->f32 = NC_BY_ROWS(float_rows, load_f32, one_f32);
  k->f16 = NC_BY_ROWS(float_rows, load_f16, one_f16);
  k->bf16 = NC_BY_ROWS(float_rows, load_bf16, one_bf16);
  k->q4_0 = NC_BY_ROWS(q4_0_rows);
  k->q4_1 = NC_BY_ROWS(q4_1_rows);
  k->q8_0 = NC_BY_ROWS(q8_0_rows);
  k->q4_k = NC_BY_ROWS(q45_k_rows, false, BlockQ4_K);
  k->q5_k = NC_BY_ROWS(q45_k_rows, true, BlockQ5_K);
  k->q6_k = NC_BY_ROWS(q6_k_rows);
  k->q4_0_4w = q4_0_4w;
  k->q8_0_4w = q8_0_4w;
  use_avx2_four_row_kernels(k);
}

#undef NC_BY_ROWS

}  // namespace nc::qk

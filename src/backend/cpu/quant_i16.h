// Int16-activation kernels over block weights (NC_CPU_ACTIVATIONS=int16, cpu_matmul.h): the
// activation row is quantized per 32 values to int16, and each block's weights, widened to int16,
// meet it in exact integer dot products; one float multiply-add per 32 values then scales them.
//
// Activation blocks (XBlock16, every format, K formats included: a super-block is 8 of them):
//   d = max|x| / 32767 over the 32 values, q = round-half-even(x * (1 / d)) (d = 0 gives q = 0),
//   s = the float sum of the 32 values themselves (not of the quantized ones), in a fixed order:
//   t_l = ((x[l] + x[l + 8]) + x[l + 16]) + x[l + 24] for l < 8, then hsum8(t) below.
//   e = s - d * float(sum of q): the block's total rounding error (float steps in that order).
//   A value is off by at most d / 2 = max|x| / 65534 (258x finer than int8's max|x| / 254).
//
// Centring (Q4_1, Q4_K, Q5_K, whose weights w = a * q + b have q >= 0): the kernels multiply the
// raw q but add a * c * e per block, which makes the result a * sum((q - c) * xq * xd) + b * s
// + a * c * s exactly, i.e. the activations' rounding errors meet the centred q - c (c = 7.5;
// Q5_K 15.5) instead of q: on SmolLM2 this halves the logits' error for no measurable cost.
//
// Contract (order), the same on every path (portable, AVX2; the AVX-512 path runs AVX2's), so
// the paths agree bit for bit: for each output, 8 float lanes acc[l] and floats `mins`, `cen`
// start at 0; for each 32-value block in increasing k, with integer lane sums
//   P[l] = sum of wq[i] * xq[i] over elements i in {2l, 2l + 1, 2l + 16, 2l + 17} (exact),
//   acc[l] = fma(f, float(P[l]), acc[l]) with f the block's factor:
//     Q4_0: d * xd, wq = q - 8;  Q8_0: d * xd;
//     Q4_1: d * xd, then mins = mins + m * xs, cen = cen + d * (7.5 * xe);
//     Q4_K/Q5_K sub-block j: dl * xd with dl = d * sc_j, then mins = mins + (-(dmin * mn_j)) * xs,
//       cen = cen + dl * (c * xe);
//     Q6_K (two sub-blocks of 16 per block, wq = q - 32): first the lanes of i < 16 with
//       (d * sc_a) * xd (P over {2l, 2l + 1}), then those of i >= 16 with (d * sc_b) * xd;
// and out = (hsum8(acc) + mins) + cen for Q4_1/Q4_K/Q5_K, hsum8(acc) for the others, where
// hsum8(a) = ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)).
// Every kernel that serves several rows (four W rows at N = 1, four x rows at N > 1, alone or
// interleaved as XBlock16x4s) performs per output exactly these operations, so a row's bits do not
// depend on its batch. Integer ranges: |P[l]| <= 4 * 127 * 32767 (Q8_0), far inside int32.
//
// Included by the vector translation units: plain declarations only.
#pragma once
#include <cstdint>

#include "backend/cpu/quant_blocks.h"
#include "backend/cpu/quant_dot.h"
#include "backend/cpu/quant_fdot.h"

namespace nc::qk {

struct XBlock16 {
  float d, s, e;  // e = s - d * (sum of q): the block's total rounding error, for the centring
  int16_t q[kQK];
};
// The centres c (see above).
constexpr float kCentreQ4 = 7.5f, kCentreQ5 = 15.5f;

// Block i of four XBlock16 rows side by side (rows r = 0..3): the same values, laid out so that a
// kernel loads the four rows' d, s and e with one load each.
struct XBlock16x4 {
  float d[4], s[4], e[4];
  int16_t q[4][kQK];
};
static_assert(sizeof(XBlock16x4) == 4 * sizeof(XBlock16));

struct I16Kernels {
  QuantizeFn quantize = nullptr;         // cols floats (a multiple of 32) -> XBlock16s
  DotFn dot[kNumBlockFormats] = {};      // x rows are XBlock16s (quant_dot.h's DotFn shape)
  Dot4Fn dot4[kNumBlockFormats] = {};    // null where a path has none
  DotX4Fn dotx4[kNumBlockFormats] = {};  // x rows as XBlock16x4s; null where a path has none
};

// Plain C++, any CPU (quant_i16.cc).
extern const I16Kernels kPortableI16Kernels;
// AVX2 + FMA + F16C (quant_i16_avx2.cc); callable only where cpu_isa.h says so.
void use_avx2_i16_kernels(I16Kernels* k);

}  // namespace nc::qk

// Dot-product kernels of one instruction set over the weight formats of quant_blocks.h, as a
// table of plain function pointers (cpu_matmul picks the table at run time, cpu_isa.h).
//
// Contract of every DotFn: for i < nx, out[i * out_stride] = the dot product of the weight row
// `w` (cols values in its stored format) with activation row i, which starts x_stride bytes after
// row i - 1 at `x` and is float32 for F32/F16/BF16 weights, XBlock32s for Q4_0/Q4_1/Q8_0 and
// XBlock256s for the K formats. Each result is computed in a fixed order that depends only on
// the two rows (never on nx or on i): a kernel that handles several x rows at once performs,
// per row, exactly the operations of nx = 1. Integer sums within a block are exact; the float
// accumulation across blocks is per-ISA (paths agree within float rounding, not bit for bit).
//
// Quantizers: quantize32/quantize256 turn cols floats (a multiple of 32 / 256) into XBlock32s /
// XBlock256s as quant_blocks.h defines, bit-identically on every path.
//
// Included by the AVX2 translation unit: plain declarations only, no standard-library inlines.
#pragma once
#include <cstdint>

#include "backend/cpu/quant_blocks.h"

namespace nc::qk {

using DotFn = void (*)(const void* w, const void* x, int64_t x_stride, int nx, int64_t cols,
                       float* out, int64_t out_stride);
// Four weight rows (w_stride bytes apart) times one activation row: out[j] = the DotFn result of
// row j with nx = 1, bit for bit (the same operations in the same order; only interleaved).
using Dot4Fn = void (*)(const void* w, int64_t w_stride, const void* x, int64_t cols, float* out);
// One weight row times four activation rows interleaved as XBlock32x4s (cols / 32 of them):
// out[r * out_stride] = the DotFn result of row r, bit for bit; only the scale and min products
// of the four rows are done in one vector operation (each lane the same product as alone).
using DotX4Fn = void (*)(const void* w, const void* x4, int64_t cols, float* out,
                         int64_t out_stride);
using QuantizeFn = void (*)(const float* x, int64_t cols, void* out);

struct QuantKernels {
  QuantizeFn quantize32, quantize256;
  DotFn f32, f16, bf16, q4_0, q4_1, q8_0, q4_k, q5_k, q6_k;
  Dot4Fn q4_0_4w, q4_1_4w, q8_0_4w;  // null where a path has none: cpu_matmul calls DotFn 4 times
  DotX4Fn q4_1_x4, q8_0_x4;          // null where a path has none: cpu_matmul uses DotFn
};

// The portable kernels (quant_dot.cc): plain C++, any CPU.
extern const QuantKernels kPortableKernels;
// Replaces the entries of `k` that have AVX2 + FMA + F16C versions (quant_dot_avx2.cc); the
// result may only be called where cpu_isa.h says the CPU has them.
void use_avx2_kernels(QuantKernels* k);
// Part of use_avx2_kernels: the four-row kernels (quant_dot_avx2_rows4.cc).
void use_avx2_four_row_kernels(QuantKernels* k);

}  // namespace nc::qk

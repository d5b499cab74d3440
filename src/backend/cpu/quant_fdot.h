// Float-activation kernels over block weights: each weight block is decoded to float32 (in
// registers, or into a small cache-resident buffer) and multiplied with the float32 activation row
// as it is; the activations are never quantized. One table per instruction set (cpu_isa.h).
//
// Decoded values: exactly formats/gguf.h's dequantize() of the block, bit for bit. (Every product
// in the formulas of quant_blocks.h is exact in float32 except Q6_K's last one, which both round
// once; the one multiply-add is fused here, a single rounding as dequantize's exact product and
// add.) So the float-activation path computes the float32 model of the dequantized weights.
//
// Contract (order): on one path, every output element is one dot product of a decoded weight row
// with an x row, summed in a fixed order that depends only on cols: the path's vector width W
// (8 on AVX2, 16 on AVX-512; 8 partial sums on the portable path) of partial sums, each taking
// the products of k = lane, lane + W, ... in increasing k, then a fixed reduction of the lanes.
// DirectFn (decoding in registers) and GemmFn over DecodeRowFn's output perform exactly these
// operations, so a row's result is the same bits whether it meets its weights through one or the
// other, alone or among other rows (batch invariance). Paths agree within float rounding only.
//
// Included by the vector translation units: plain declarations only.
#pragma once
#include <cstdint>

namespace nc::qk {

// The block formats of quant_blocks.h, in this order (kQ4_0 .. kQ6_K index the tables below).
enum BlockFormat { kQ4_0, kQ4_1, kQ8_0, kQ4_K, kQ5_K, kQ6_K, kNumBlockFormats };

// Row `w` (cols values, a whole number of blocks) decoded to cols floats.
using DecodeRowFn = void (*)(const void* w, int64_t cols, float* out);
// direct_rows weight rows (w_stride bytes apart) times one x row: out[j] for j < direct_rows.
using DirectFn = void (*)(const void* w, int64_t w_stride, const float* x, int64_t cols,
                          float* out);
// Decoded rows times x rows: out[j + r * ldo] = row j of w (ldw floats apart, j < mw) times row r
// of x (ldx floats apart, r < nx); cols a multiple of 32.
using GemmFn = void (*)(const float* w, int64_t ldw, int mw, const float* x, int64_t ldx, int nx,
                        int64_t cols, float* out, int64_t ldo);

struct FloatActKernels {
  int direct_rows = 0;  // 0: no DirectFn; cpu_matmul decodes and calls gemm for every N
  GemmFn gemm = nullptr;
  DecodeRowFn decode[kNumBlockFormats] = {};
  DirectFn direct[kNumBlockFormats] = {};
};

// Plain C++, any CPU (quant_fdot.cc).
extern const FloatActKernels kPortableFloatKernels;
// AVX2 + FMA + F16C (quant_fdot_avx2.cc); callable only where cpu_isa.h says so.
void use_avx2_float_kernels(FloatActKernels* k);
// AVX-512 F + BW + VL (quant_fdot_avx512.cc); callable only where cpu_isa.h says so. Built only
// where the compiler has the flags (NC_HAVE_AVX512_KERNELS); else it leaves `k` as it is.
void use_avx512_float_kernels(FloatActKernels* k);

}  // namespace nc::qk

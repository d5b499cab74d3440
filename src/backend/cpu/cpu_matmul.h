// Matrix products on the CPU over weights kept in their storage format: float32, f16, bf16, or a
// GGML block format (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K) read block by block, never expanded.
//
// Contract:
//   - out[n, m] = sum_k x[n, k] * W[m, k] for n < N, m < W.rows.
//   - Batch invariance: each out[n, m] is computed by one dot product of W row m with x row n
//     in a fixed order (the format's blocks in order, the activation row quantized per block
//     where the format's dot product wants it, as llama.cpp does); its result depends on those
//     two rows only, never on N, on the other rows, on the thread count or on the split.
//   - The work is split across the pool's threads by output rows (W rows).
//   - Vector code (AVX2 + FMA + F16C; no AVX-512 path yet) is chosen at run time from what the
//     CPU reports (cpu_isa.h; NC_CPU_ISA forces a lower path); every path gives the same result
//     as the portable one within float rounding, and a CPU without AVX2 never executes an AVX2
//     instruction.
//   - Activations: F32/F16/BF16 weights meet x as float32; Q4_0/Q4_1/Q8_0 weights meet x
//     quantized to int8 per 32 values (with the block sum, for Q4_1's min), the K formats meet x
//     quantized per 256 values with per-16 sums (quant_blocks.h). The x rows are quantized once
//     per call.
//     Accuracy: a quantized x value is off by at most half a step, max|x| of its block / 254,
//     so |out - exact| <= sum over blocks of (max|x_b| / 254) * sum_b |w| (plus float rounding).
//   - No bias (the caller adds it). The data is read in place: block rows as GGUF lays them out
//     (2-byte aligned), f32 rows 4-byte aligned. Not to be called from inside a job of `pool`.
//   - Errors (nc::Error naming the value): cols not a whole number of the format's blocks, a
//     dtype that is not a weight format (I32), a view without data.
#pragma once
#include <cstdint>

#include "backend/cpu/cpu_isa.h"
#include "core/dtype.h"

namespace nc {

class ThreadPool;

// A weight matrix [rows, cols] as stored: row r starts at data + r * row_bytes, where row_bytes
// = dtype_bytes(dtype, cols).
struct CpuWeightView {
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
  const void* data = nullptr;
};

// out[N, W.rows] = x[N, W.cols] . W^T (see the contract above).
void cpu_matmul(const float* x, int64_t N, const CpuWeightView& w, float* out, ThreadPool& pool);

// The same on a given path (tests run every path the CPU supports).
void cpu_matmul(const float* x, int64_t N, const CpuWeightView& w, float* out, ThreadPool& pool,
                CpuIsa isa);

// Row r of W as float32 (cols values): embedding lookups from a block-format table. Exactly
// formats/gguf.h's dequantize() of that row.
void cpu_weight_row(const CpuWeightView& w, int64_t r, float* out);

}  // namespace nc

// Matrix products on the CPU over weights kept in their storage format: float32, f16, bf16, or a
// GGML block format (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K) read block by block, never expanded.
//
// Contract:
//   - out[n, m] = sum_k x[n, k] * W[m, k] for n < N, m < W.rows.
//   - Batch invariance: each out[n, m] is computed by one dot product of W row m with x row n
//     in a fixed order that depends only on the path (ISA, activation mode) and cols; its result
//     depends on those two rows only, never on N, on the other rows, on the thread count or on
//     the split. Kernels that serve several rows at once (four weight rows per call at N = 1, a
//     decoded strip of weights against many x rows) perform per element exactly the operations
//     of the single-row kernel (tests/test_cpu_quant.cc checks the bits).
//   - The work is split across the pool's threads by output rows (W rows).
//   - Vector code (AVX2 + FMA + F16C; AVX-512 F/BW/VL for the float-activation block kernels) is
//     chosen at run time from what the CPU reports (cpu_isa.h; NC_CPU_ISA forces a lower path);
//     every path gives the same result as the portable one within float rounding, and a CPU
//     without an extension never executes its instructions.
//   - Activations (CpuActivations below; NC_CPU_ACTIVATIONS=int8|int16|f32, default int8: the
//     faster at batch 1 on AVX2, docs/benchmarks.md "CPU engine"):
//       f32: block weights are decoded to float32 (exactly dequantize()'s values, quant_fdot.h)
//         and meet x as it is: the result is the float32 product of the dequantized weights,
//         within float rounding of a float64 reference (SmolLM2's logits within 1e-4 of
//         transformers loading the same GGUF).
//       int16: x quantized per 32 values to int16 (scale max|x| / 32767) meets the weights
//         widened to int16 in exact integer dot products, one float multiply-add per 32 values;
//         the min terms (Q4_1, Q4_K, Q5_K) use x's own float sums, and the rounding errors meet
//         centred weights (quant_i16.h). A value is off by at most max|x| of its block / 65534
//         (SmolLM2's logits 0.6-3.5e-4 from transformers'); the paths give the same bits.
//       int8: Q4_0/Q4_1/Q8_0 weights meet x quantized to int8 per 32 values (with the block sum,
//         for Q4_1's min), the K formats meet x quantized per 256 values with per-16 sums
//         (quant_blocks.h), as llama.cpp does; the x rows are quantized once per call. A
//         quantized x value is off by at most half a step, max|x| of its block / 254, so
//         |out - exact| <= sum over blocks of (max|x_b| / 254) * sum_b |w| (plus rounding); on
//         SmolLM2 this moves the logits 2-5% from transformers'.
//     F32/F16/BF16 weights meet x as float32 in every mode.
//   - No bias (the caller adds it). The data is read in place: block rows as GGUF lays them out
//     (2-byte aligned), f32 rows 4-byte aligned. Not to be called from inside a job of `pool`.
//   - Errors (nc::Error naming the value): cols not a whole number of the format's blocks, a
//     dtype that is not a weight format (I32), a view without data, an unknown or unsupported
//     NC_CPU_ISA / NC_CPU_ACTIVATIONS value.
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

enum class CpuActivations { F32, Int8, Int16 };
inline constexpr CpuActivations kAllCpuActivations[] = {CpuActivations::F32, CpuActivations::Int8,
                                                        CpuActivations::Int16};
const char* cpu_activations_name(CpuActivations a);  // "f32", "int8", "int16"
// The mode for `value` (a NC_CPU_ACTIVATIONS setting; null or empty = int8); throws nc::Error
// naming the value when it is unknown.
CpuActivations cpu_activations_parse(const char* value);
// The mode in use: cpu_activations_parse(getenv("NC_CPU_ACTIVATIONS")), read once per process,
// unless set_cpu_activations() chose one since.
CpuActivations cpu_activations_active();
// Process-wide; for the tests and for a front end's flag: call it between steps, never while a
// matmul runs (a step must not mix the modes).
void set_cpu_activations(CpuActivations a);

// out[N, W.rows] = x[N, W.cols] . W^T (see the contract above), on the active path and mode.
void cpu_matmul(const float* x, int64_t N, const CpuWeightView& w, float* out, ThreadPool& pool);

// The same on a given path and mode (tests run every path the CPU supports).
void cpu_matmul(const float* x, int64_t N, const CpuWeightView& w, float* out, ThreadPool& pool,
                CpuIsa isa, CpuActivations act);

// Row r of W as float32 (cols values): embedding lookups from a block-format table. Exactly
// formats/gguf.h's dequantize() of that row.
void cpu_weight_row(const CpuWeightView& w, int64_t r, float* out);

}  // namespace nc

// A GEMV-style bf16 linear for few rows (decode batches): out[n, m] = x[n, :] . w[m, :] (+ bias[m])
// for n < rows, each weight row read once for all rows (gemv.cu).
//
// Contract: x bf16 [rows, k], w bf16 [m, k], both contiguous; out [rows, m] bf16, or float32 when
// `f32_out`; bias (optional, null for none) [m] in the output's dtype. Requires 1 <= rows <=
// kGemvMaxRows, k % 8 == 0 and x, w 16-byte aligned (gemv_supported); float32 accumulation. The
// launch is enqueued on `stream`; a failed launch or an unsupported shape throws
// std::runtime_error. Plain host functions: callers compile with the ordinary C++ compiler.
//
// gemv_silu_bf16 is the same product with x = silu(gate_up[:, :k]) * gate_up[:, k:] rounded to
// bf16 (silu_and_mul_bf16's output), formed on the fly from gate_up bf16 [rows, 2k] (contiguous,
// 16-byte aligned; gemv_supported(rows, k, gate_up, w)): bit for bit silu_and_mul_bf16 then
// gemv_bf16. Both launch with programmatic dependent launch where pdl.h allows it (results do not
// change): they read the first weight chunks before waiting for the kernel before them, so `w`
// must not be written by that kernel (weights never are; an activation passed as w would need
// NC_PDL=0).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace nc::cuda {

inline constexpr int kGemvMaxRows = 16;

bool gemv_supported(int64_t rows, int64_t k, const void* x, const void* w);

void gemv_bf16(const void* x, const void* w, const void* bias, void* out, bool f32_out,
               int64_t rows, int64_t m, int64_t k, cudaStream_t stream);
void gemv_silu_bf16(const void* gate_up, const void* w, const void* bias, void* out, bool f32_out,
                    int64_t rows, int64_t m, int64_t k, cudaStream_t stream);

}  // namespace nc::cuda

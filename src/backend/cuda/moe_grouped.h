// Tensor-core grouped GEMM for the MoE experts (moe_grouped.cu), the fast path of
// moe_experts_bf16 (moe_kernels.h): CUTLASS's SM80 grouped GEMM (from the headers FlashInfer's
// wheel bundles; it runs on sm_80 and later, the H100/H200 included), bf16 inputs, float32
// accumulation, one launch per projection for all experts.
//
// The rows are already permuted and grouped by expert: expert e owns rows [offsets[e],
// offsets[e+1]) of A (row-major, ld K). Its weights are W + e * N * K (row-major [N, K], i.e. the
// column-major K x N operand, ld K). C row r = A row r . W_e^T, written row-major (ld N) as bf16
// or float32. A small kernel writes the per-expert problem sizes (m = the expert's row count,
// possibly 0: no tiles), pointers and strides into `args` on the device from `offsets`, so
// nothing waits for the host and the sequence can be captured in a CUDA graph. The kernel is
// persistent (CUTLASS's device-side scheduler walks the tiles of all experts); its block count
// (occupancy x SMs) is computed once per process.
//
// Batch invariance: no split-K and one fixed tile shape, so an output row depends on its own A
// row and its expert's weights only, not on how many rows share the launch.
//
// Requirements (moe_grouped_supported): K and N multiples of 8 (16-byte vector access of A, W and a
// bf16 C; 4 for a float C), pointers 16-byte aligned (the MoE scratch is 256-byte aligned, rows
// follow from K, N % 8 == 0).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace nc::cuda {

enum class MoeGemmOut { BF16, F32 };

// Whether both projections of an expert FFN (hidden H, moe_intermediate I) fit the kernel.
bool moe_grouped_supported(int hidden, int inter);

// Device bytes of one projection's argument block for E experts (a multiple of 256).
size_t moe_grouped_args_bytes(int num_experts);

// C = grouped A . W_e^T as above; args: moe_grouped_args_bytes(E) of device memory, 256-byte
// aligned, not shared with a launch still in flight on another stream.
void moe_grouped_gemm(const void* A, const void* W, void* C, MoeGemmOut out, int N, int K,
                      const int* offsets, int num_experts, void* args, cudaStream_t stream);

}  // namespace nc::cuda

// The device side of the CUDA backend's mixture-of-experts ops (moe.cu), part of the kernels.h
// interface (which includes this header): plain host functions, bf16 data as void*.
//
// moe_route_f32: one thread per token runs backend/moe_routing.h's routing (softmax or sigmoid
// scores, groups, top-k with ties to the lower id, renormalisation, scaling) in float32.
//
// moe_experts_bf16: out[t] = sum over slots j in order of weights[t, j] * expert ids[t, j](x[t]).
// Everything stays on the device and every launch size depends on T only (no host sync, so the
// sequence could be captured in a CUDA graph once the scratch is allocated beforehand):
//   1. count the pairs (t, j) per expert (atomics), 2. one thread turns the counts into segment
//   offsets and a table of row tiles (expert, first row) of at most kMoeTileRows rows each,
//   3. scatter: each pair takes a row in its expert's segment (atomic cursor: the order inside a
//   segment is arbitrary, which is harmless because every output row is computed from its own
//   input row alone), and the token's row of x is copied there (permutation),
//   4. grouped GEMM over the tile table (one launch per projection: gate_up, then down; a tile
//   multiplies its rows by its expert's weights; tiles past the table's end return at once),
//   SiLU-GLU between them, 5. each token sums its slots' rows in slot order (un-permutation).
// Step 4 runs one of two GEMMs (MoeGemmPath): Grouped, CUTLASS's tensor-core grouped GEMM
// (moe_grouped.h: bf16 gate_up output, float32 down output), or Simt, a plain tiled SIMT kernel
// (float32 accumulation, k in a fixed order) kept as the fallback for shapes the grouped kernel
// does not take (moe_grouped_supported). Both are batch invariant. The caller (cuda_moe.cc)
// chooses; docs/models.md says the rule and why.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace nc::cuda {

constexpr int kMoeTileRows = 64;
// The most experts the routing kernel takes (a warp per token holds their choice values in
// registers, 32 per lane).
constexpr int kMaxRouteExperts = 1024;

enum class MoeGemmPath { Simt, Grouped };

struct MoeRouteParams {
  int num_experts = 0, top_k = 0, n_group = 1, topk_group = 1;
  bool sigmoid = false, renormalize = false;
  float scaling = 1.0f;
};

// ids i32 [T, k], weights f32 [T, k] from logits f32 [T, E]; bias f32 [E] (sigmoid) or null.
// n_group <= 64.
void moe_route_f32(const float* logits, const float* bias, int tokens, const MoeRouteParams& p,
                   int32_t* ids, float* weights, cudaStream_t stream);

// Device bytes of moe_experts_bf16's scratch for these sizes.
size_t moe_scratch_bytes(int tokens, int top_k, int num_experts, int hidden, int inter);

// x, out: bf16 [T, H]; ids i32, weights f32 [T, k]; gate_up bf16 [E, 2I, H]; down bf16 [E, H, I];
// scratch: moe_scratch_bytes (256-byte aligned). Pairs with an id outside [0, E) add nothing.
// path Grouped needs moe_grouped_supported(hidden, inter).
void moe_experts_bf16(const void* x, const int32_t* ids, const float* weights, const void* gate_up,
                      const void* down, void* out, int tokens, int top_k, int num_experts,
                      int hidden, int inter, void* scratch, MoeGemmPath path, cudaStream_t stream);

}  // namespace nc::cuda

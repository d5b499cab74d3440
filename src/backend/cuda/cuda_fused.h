// The CUDA backend's fused forms of Backend ops that the decode step runs as separate kernels
// elsewhere (issue #16: fewer, fused small kernels at small batches).
//
// silu_mul_linear: where it fits (below), one GEMV kernel (gemv_silu_bf16) forms the activation
// from gate_up on the fly, bit for bit silu_and_mul then the GEMV linear(); elsewhere the caller
// runs Backend's default (silu_and_mul, then linear). It fits when fusion is on, the call has
// 1..silu_max_rows rows, the weight is bf16 (FP8 weights keep their own GEMM), the output bf16 or
// float32 (bias, if any, of the output's dtype), all contiguous and 16-byte aligned with I % 8 ==
// 0. silu_max_rows defaults to 1: one row is where linear() takes the GEMV kernel untuned
// (gemm_candidates.cc), so the fused kernel replaces exactly the kernels it equals; 2..8 rows
// (NC_FUSE_SILU_MAX_ROWS) replace cuBLASLt's pick and are unmeasured.
//
// qkv_split_norm_rope_append: the K/V append folded into the qkv prologue (fused_kernels.h) where
// fusion is on and the plan is this backend's ordinary attention plan (eager or graph; not MLA,
// not sparse: those keep their own append) over bf16 pages (an fp8 cache keeps the separate
// append, which quantises), for the plan's token count, heads and head_dim.
//
// Environment (read when the backend is made): NC_FUSE=1 turns fusion on, NC_FUSE=0 off (A/B),
// as CudaBackendOptions::fuse_small_ops = false does; unset, kFuseByDefault: off, because on an
// H100 (2026-12-06, nc_gpu_bench decode-b1, batch 1, PDL on) it made the step 1% slower on the
// Qwen3-0.6B shape (1.294 -> 1.310 ms) and 18% slower on Llama-3-8B's (6.058 -> 7.120 ms: the
// fused GEMV is slower than the plain one at the down projection). The GPU suite turns it on.
// NC_FUSE_SILU_MAX_ROWS (0..16) sets the rows.
#pragma once
#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/fused_kernels.h"

namespace nc::cuda_host {

inline constexpr bool kFuseByDefault = false;

struct FuseOptions {
  bool enabled = true;
  int silu_max_rows = 1;
  // From the environment; `enabled` (the backend's option) and NC_FUSE both must allow it.
  static FuseOptions from_env(bool enabled);
};

// Enqueues the fused silu_mul_linear and returns true when the call fits; false (nothing
// enqueued) otherwise. nc::Error for a launch failure.
bool fused_silu_mul_linear(const Context& ctx, const FuseOptions& o, const Tensor& gate_up,
                           const Tensor& w, const Tensor& bias, Tensor out);

// Where the fused prologue appends for `plan` over `pages` with k rows [tokens, k_width]: true and
// *out filled when it fits (above), false otherwise.
bool fused_append_target(const FuseOptions& o, const AttentionPlan& plan, const Tensor& pages,
                         int64_t tokens, int64_t k_width, int head_dim, cuda::KvAppendTarget* out);

}  // namespace nc::cuda_host

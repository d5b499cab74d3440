// The CUDA backend's mixture-of-experts ops (Backend::moe_route, Backend::moe_experts): argument
// checks, then the kernels of moe.cu (moe_kernels.h) on the context's stream. Expert weights are
// bf16, stacked [E, 2I, H] and [E, H, I] (upload() converts checkpoints' weights to bf16).
//
// The experts' scratch (permuted rows and intermediate activations, moe_scratch_bytes) is a
// device buffer owned here. reserve() sizes it once for the largest step (the decoder calls it
// through Backend::reserve_moe when it sizes its workspace, before any graph is captured, so
// the memory plan counts it and captured graphs keep a fixed address). Every launch size of a
// call depends on T only and nothing waits for the host, so MoE layers run inside CUDA graphs.
// A call larger than the reservation grows the buffer, outside a capture only (inside one it is
// an error naming the sizes); the replaced buffer is kept, not freed, as a graph captured
// earlier may still read it, until the next reserve(), which the caller makes only after
// dropping its graphs (the decoder clears them before it regrows its workspace).
//
// The expert GEMMs can run on tensor cores (CUTLASS's grouped GEMM, moe_grouped.h) where the shape
// allows it (hidden and moe_intermediate multiples of 8, weights 16-byte aligned), else on the SIMT
// kernel. `auto` takes the grouped GEMM wherever it fits (5-10x the SIMT kernel's speed on an
// H100, docs/benchmarks.md); the rule never looks at the token count, so a token's output never
// depends on the step's batch. The environment
// variable NC_MOE_GEMM=auto|simt|grouped (read at every call, for tests and the benchmark) forces a
// path; grouped on an unsupported shape is an error naming it.
#pragma once
#include <memory>
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernels.h"
#include "backend/moe_routing.h"

namespace nc::cuda_host {

class CudaMoe {
 public:
  explicit CudaMoe(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}

  // logits f32 [T, E]; bias f32 [E] or undefined; ids i32 [T, k]; weights f32 [T, k].
  void route(const Tensor& logits, const Tensor& bias, const MoeRouting& r, Tensor ids,
             Tensor weights);
  // x, out bf16 [T, H]; ids i32, weights f32 [T, k]; gate_up bf16 [E, 2I, H]; down bf16
  // [E, H, I].
  void experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const Tensor& gate_up,
               const Tensor& down, Tensor out);
  // The GEMM path a call with these sizes takes (the rule above, NC_MOE_GEMM applied).
  static cuda::MoeGemmPath gemm_path(int hidden, int inter, bool weights_aligned);
  // Scratch for calls of up to max_tokens rows; returns the bytes held.
  int64_t reserve(int max_tokens, int top_k, int num_experts, int hidden, int inter);

 private:
  std::shared_ptr<Context> ctx_;
  // Grows scratch_ to `bytes` (an error while the stream is being captured).
  void ensure_scratch(size_t bytes, const char* why);

  Tensor scratch_;               // grow-only (bytes as I32 words)
  std::vector<Tensor> retired_;  // replaced scratch, still readable by earlier graphs
};

}  // namespace nc::cuda_host

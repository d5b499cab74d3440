// The CUDA backend's mixture-of-experts ops (Backend::moe_route, Backend::moe_experts): argument
// checks, then the kernels of moe.cu (moe_kernels.h) on the context's stream. Expert weights are
// bf16, stacked [E, 2I, H] and [E, H, I] (upload() converts checkpoints' weights to bf16).
//
// The experts' scratch (permuted rows and intermediate activations, moe_scratch_bytes) is a
// grow-only device buffer owned here, grown in stream order when a call needs more. Growing
// inside a CUDA graph capture would be wrong, so the decoder runs MoE models eagerly
// (LlamaModel::graph_eligible); every launch size depends on T only and nothing waits for the
// host, so graphs become possible once the scratch is reserved before capture.
#pragma once
#include <memory>

#include "backend/cuda/cuda_context.h"
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

 private:
  std::shared_ptr<Context> ctx_;
  Tensor scratch_;  // grow-only (bytes as U8-like I32 words)
};

}  // namespace nc::cuda_host

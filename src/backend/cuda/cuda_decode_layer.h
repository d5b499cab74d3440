// The CUDA backend's Backend::decode_layer: a one-request decode step's whole dense layer as one
// persistent kernel (decode_layer_kernels.h), where it fits; the caller runs the layer's ops one
// by one where it does not.
//
// It fits when the runner is on, the plan is this backend's ordinary attention plan of one level
// (no cascade) with one entry and one token, over bf16 pages (no fp8, latent, window or soft cap),
// head_dim 64 or 128 with a GQA group of 1, 2, 4 or 8, and every weight and row is bf16, on the
// device, contiguous, 16-byte aligned and of the layer's shape (decode_layer_kernels.h).
//
// On or off: CudaBackendOptions::decode_layer (On, Off, or Auto: the environment's
// NC_DECODE_LAYER=1 / 0; unset, on for layers of at most kDecodeLayerAutoMaxBytes of weights). The
// runner owns the kernel's scratch (a few hundred KB, allocated when it is made and not off, so
// that graph captures never allocate).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/decode_layer_kernels.h"

namespace nc::cuda_host {

// Auto's limit: a layer's bf16 weights. Measured on an H100 (docs/benchmarks.md, stop 18), batch
// 1 against the op-by-op layer: 18% faster at 31 MB a layer (Qwen3-0.6B shape), 6% at 122 MB
// (Llama-3.2-1B), 4% slower at 436 MB (Llama-3-8B; each stage's weights far past the L2, and the
// stages' ramps cost more than the launches saved). Nothing between was measured: the limit
// takes the measured wins only.
inline constexpr int64_t kDecodeLayerAutoMaxBytes = int64_t(128) << 20;

class DecodeLayerRunner : NonCopyable {
 public:
  DecodeLayerRunner(std::shared_ptr<Context> ctx, DecodeLayerMode mode);
  ~DecodeLayerRunner();
  bool enabled() const { return scratch_ != nullptr; }
  // Enqueues the layer and returns true where it fits (above); false, nothing enqueued, else.
  bool run(const AttentionPlan& plan, const Tensor& kv_pages, const DecodeLayerWeights& w,
           const DecodeLayerIo& io);
  // With NC_DECODE_LAYER_TRACE=1 when the runner was made, every launch records block 0's clock at
  // its stage boundaries (decode_layer_kernels.h); this returns [launches, stamps...] so far and
  // starts over (synchronises). Empty without the trace.
  std::vector<uint64_t> take_trace();

 private:
  std::shared_ptr<Context> ctx_;
  bool by_size_ = false;  // Auto without the environment's word: kDecodeLayerAutoMaxBytes decides
  // DecodeLayerParams::flags: no L2 prefetches, which with the stages' inputs staged at the start
  // cost 2% on the Qwen3-0.6B shape and far more on larger layers (docs/benchmarks.md, stops 17
  // and 18); NC_DECODE_LAYER_FLAGS, read when the runner is made, overrides it for A/B runs.
  int flags_ = cuda::kDecodeLayerNoPrefetch;
  void* scratch_ = nullptr;
  unsigned long long* trace_ = nullptr;
};

}  // namespace nc::cuda_host

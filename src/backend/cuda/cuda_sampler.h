// The CUDA backend's sampler (Backend::sample_tokens_async, reserve_sampling).
//
// One draw per logit row without copying the logits to the host: the rows' parameters go up as
// one SamplerParamBlock (sampler_params.h) in a single copy; rows without top-k / top-p / min-p
// are drawn by sample_rows directly, filtered steps go through FlashInfer's filters in chunks of
// at most kFilterMaxRows rows. reserve() sizes the sampler's scratch once (the filter
// workspace, the parameter block, sample_rows' running best); a step that needs more than was
// reserved allocates its own. The ids are written to the caller's device
// tensor and copied back into a pooled pinned buffer behind the step's kernels; the returned
// handle waits for that copy only.
#pragma once
#include <memory>
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "backend/sampler_params.h"

namespace nc::cuda_host {

class CudaSampler {
 public:
  explicit CudaSampler(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}

  int64_t reserve(int max_rows, int vocab);
  std::unique_ptr<PendingTokens> sample_async(const Tensor& logits,
                                              const std::vector<RowSampling>& rows, Tensor ids);

 private:
  void check_arguments(const Tensor& logits, const std::vector<RowSampling>& rows,
                       const Tensor& ids) const;
  void sample_filtered(const std::vector<RowSampling>& rows, const float* x, int V,
                       const SamplerColumns& col, int32_t* ids);
  cudaStream_t s() const { return ctx_->stream; }

  // 4-byte words of a SamplerParamBlock row.
  static constexpr int64_t kParamWords = int64_t(SamplerParamBlock::kRowBytes / 4);

  std::shared_ptr<Context> ctx_;
  // Scratch from reserve(): sample_filtered's workspace, and for up to reserved_rows_ rows the
  // parameter block and sample_rows' running best (larger draws allocate their own).
  Tensor filter_ws_;
  Tensor params_;
  Tensor best_;
  int64_t reserved_rows_ = 0;
};

}  // namespace nc::cuda_host

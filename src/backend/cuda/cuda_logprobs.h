// Log-probabilities and logit_bias of a CUDA draw, on the device (logprobs_kernels.h holds the
// numbers' contract; backend/logprobs.h the API's).
//
// For one Backend::sample_tokens_async call whose rows ask for log-probabilities or carry a
// logit_bias, in stream order:
//   DeviceRowExtras x(ctx, logits, rows);  // the top-k and lse of the raw rows (before any mask)
//   ... the structured-output masks ...
//   x.apply_bias();                        // the biases added in place, raw values kept
//   ... the draw (CudaSampler) ...
//   return x.finish(ids, drawn);           // the drawn tokens' log-probabilities, one copy back
// The returned PendingTokens gives the ids as `drawn` does and the RowLogprobs of the rows with
// RowSampling::logprobs >= 0 (others: token -1). Nothing goes through the host's copy of a row.
#pragma once
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"

namespace nc::cuda_host {

class DeviceRowExtras {
 public:
  // logits: CUDA float32 [R, V], contiguous; rows: R entries (validated here).
  DeviceRowExtras(std::shared_ptr<Context> ctx, Tensor logits,
                  const std::vector<RowSampling>& rows);

  void apply_bias();
  std::unique_ptr<PendingTokens> finish(const Tensor& ids, std::unique_ptr<PendingTokens> drawn);

 private:
  std::shared_ptr<Context> ctx_;
  Tensor logits_;
  int rows_ = 0, vocab_ = 0;
  bool any_logprobs_ = false;
  std::vector<int32_t> k_;  // per row, -1: no log-probabilities
  // The bias entries grouped by row: (row, id, value), and each row's first entry.
  std::vector<int32_t> bias_row_, bias_id_, bias_begin_;
  std::vector<float> bias_value_;
  Tensor k_dev_, slots_dev_, bias_dev_, raw_dev_;
};

}  // namespace nc::cuda_host

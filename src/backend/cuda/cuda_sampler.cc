// The CUDA backend's sampler (cuda_sampler.h).
#include "backend/cuda/cuda_sampler.h"

#include <algorithm>

#include "backend/cuda/kernels.h"

namespace nc::cuda_host {
namespace {

// Sampled ids copied to a pinned buffer behind the step's kernels; wait() blocks on that copy
// only, so the host can plan the next step meanwhile.
class CudaPendingTokens : public PendingTokens {
 public:
  CudaPendingTokens(std::shared_ptr<Context> ctx, const Tensor& ids, int64_t n)
      : n_(n), buf_(ctx, size_t(n) * 4) {
    const Staging& b = buf_.get();
    cuda_check(
        cudaMemcpyAsync(b.host, ids.data(), size_t(n) * 4, cudaMemcpyDeviceToHost, ctx->stream),
        "sampled ids to the host");
    cuda_check(cudaEventRecord(b.copied, ctx->stream), "cudaEventRecord");
  }
  // Unread: the pool's next user of the buffer waits for the copy first.
  std::vector<int32_t> wait() override {
    const Staging& b = buf_.get();
    NC_CHECK(b.host, "sampled ids: wait() called twice");
    cuda_check(cudaEventSynchronize(b.copied),
               "waiting for sampled ids (an earlier kernel failed)");
    const auto* ids = static_cast<const int32_t*>(b.host);
    std::vector<int32_t> out(ids, ids + n_);
    buf_.give_back();
    return out;
  }

 private:
  int64_t n_;
  PooledStaging buf_;
};

}  // namespace

int64_t CudaSampler::reserve(int max_rows, int vocab) {
  NC_CHECK(max_rows >= 1 && vocab >= 1, "reserve_sampling: {} rows of {} ids", max_rows, vocab);
  size_t bytes = 0;
  k_call([&] {
    bytes = cuda::filter_workspace_bytes(std::min(max_rows, cuda::kFilterMaxRows), vocab);
  });
  if (!filter_ws_.defined() || filter_ws_.nbytes() < bytes)
    filter_ws_ = device_alloc(ctx_, {int64_t((bytes + 3) / 4)}, DType::I32);
  if (max_rows > reserved_rows_) {
    params_ = device_alloc(ctx_, {int64_t(max_rows) * kParamWords}, DType::I32);
    best_ = device_alloc(ctx_, {2 * int64_t(max_rows)}, DType::I32);
    reserved_rows_ = max_rows;
  }
  return int64_t(filter_ws_.nbytes() + params_.nbytes() + best_.nbytes());
}

void CudaSampler::check_arguments(const Tensor& logits, const std::vector<RowSampling>& rows,
                                  const Tensor& ids) const {
  const int64_t R = logits.ndim() == 2 ? logits.dim(0) : -1;
  NC_CHECK(R >= 0 && int64_t(rows.size()) == R,
           "sample_tokens: logits {} with {} rows of sampling parameters",
           shape_str(logits.shape()), rows.size());
  expect_cuda(logits, "sample_tokens");
  logits.expect_dtype(DType::F32, "sample_tokens");
  logits.expect_contiguous("sample_tokens");
  expect_cuda(ids, "sample_tokens ids");
  expect_i32(ids, "sample_tokens ids");
  NC_CHECK(ids.numel() == R, "sample_tokens: ids tensor {} for {} rows", shape_str(ids.shape()), R);
  for (const RowSampling& p : rows) p.validate();
}

std::unique_ptr<PendingTokens> CudaSampler::sample_async(const Tensor& logits,
                                                         const std::vector<RowSampling>& rows,
                                                         Tensor ids) {
  check_arguments(logits, rows, ids);
  const int64_t R = logits.dim(0);
  if (R == 0) return ready_tokens({});
  const int V = int(logits.dim(1));
  const bool filtered =
      std::any_of(rows.begin(), rows.end(), [](const RowSampling& p) { return p.filtered(); });
  NC_CHECK(!filtered || reinterpret_cast<uintptr_t>(logits.data()) % 16 == 0,
           "sample_tokens: top-k/top-p/min-p need 16-byte aligned logits");
  std::vector<SamplerRow> typed(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) typed[r] = SamplerRow::from(rows[r], V);
  const SamplerParamBlock block(typed);
  // From pageable memory: the copy is staged before the call returns (and it runs after the
  // previous draw's kernels, which read the reserved buffer: one stream).
  const bool reserved = R <= reserved_rows_;
  Tensor params = reserved ? params_ : device_alloc(ctx_, {R * kParamWords}, DType::I32);
  cuda_check(
      cudaMemcpyAsync(params.data(), block.data(), block.bytes(), cudaMemcpyHostToDevice, s()),
      "copy_from_host");
  const SamplerColumns col = block.columns(params.data());
  const float* x = logits.ptr<float>();
  if (!filtered) {
    // The per-row running best (8 bytes each; sample_rows zeroes it first).
    const Tensor best = reserved ? best_ : device_alloc(ctx_, {2 * R}, DType::I32);
    k_call([&] {
      cuda::sample_rows(x, int(R), V, col.inv_temperature, col.seed, nullptr, nullptr,
                        ids.ptr<int32_t>(), best.data(), s());
    });
  } else {
    sample_filtered(rows, x, V, col, ids.ptr<int32_t>());
  }
  return std::make_unique<CudaPendingTokens>(ctx_, ids, R);
}

// The rows in chunks of up to kFilterMaxRows (the workspace grows with rows * vocab): FlashInfer
// filters each chunk's probabilities (top-k / top-p only where a row of the chunk asks), then
// sample_rows draws among what is left.
void CudaSampler::sample_filtered(const std::vector<RowSampling>& rows, const float* x, int V,
                                  const SamplerColumns& col, int32_t* ids) {
  const int R = int(rows.size());
  const int chunk = std::min(R, cuda::kFilterMaxRows);
  size_t ws_bytes = 0;
  k_call([&] { ws_bytes = cuda::filter_workspace_bytes(chunk, V); });
  // The reserved scratch when it is large enough (one stream: no two draws use it at once).
  Tensor ws = filter_ws_.defined() && filter_ws_.nbytes() >= ws_bytes
                  ? filter_ws_
                  : device_alloc(ctx_, {int64_t((ws_bytes + 3) / 4)}, DType::I32);
  for (int r0 = 0; r0 < R; r0 += chunk) {
    const int m = std::min(chunk, R - r0);
    bool any_k = false, any_p = false;
    for (int r = r0; r < r0 + m; ++r) {
      const RowSampling& p = rows[size_t(r)];
      any_k |= p.filtered() && p.top_k > 0 && p.top_k < V;
      any_p |= p.filtered() && p.top_p < 1;
    }
    const float* xr = x + int64_t(r0) * V;
    k_call([&] {
      const float* probs =
          cuda::filter_probs(xr, m, V, col.temperature + r0, any_k ? col.top_k + r0 : nullptr,
                             any_p ? col.top_p + r0 : nullptr, ws.data(), s());
      cuda::sample_rows(xr, m, V, col.inv_temperature + r0, col.seed + r0, probs, col.min_p + r0,
                        ids + r0, nullptr, s());
    });
  }
}

}  // namespace nc::cuda_host

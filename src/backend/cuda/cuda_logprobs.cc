#include "backend/cuda/cuda_logprobs.h"

#include <algorithm>
#include <cstring>

#include "backend/cuda/logprobs_kernels.h"

namespace nc::cuda_host {
namespace {

constexpr int64_t kSlotWords = int64_t(sizeof(cuda::LogprobSlot) / 4);
static_assert(cuda::kMaxTopLogprobs == kMaxLogprobs, "logprobs_kernels.h follows logprobs.h");

// The drawn ids as `drawn` gives them, and the rows' log-probabilities from the slots copied into
// a pooled pinned buffer behind the kernels.
class PendingWithLogprobs : public PendingTokens {
 public:
  PendingWithLogprobs(std::shared_ptr<Context> ctx, std::unique_ptr<PendingTokens> drawn,
                      const Tensor& slots, std::vector<int32_t> k)
      : drawn_(std::move(drawn)), k_(std::move(k)), buf_(ctx, size_t(slots.nbytes())) {
    const Staging& b = buf_.get();
    cuda_check(cudaMemcpyAsync(b.host, slots.data(), size_t(slots.nbytes()), cudaMemcpyDeviceToHost,
                               ctx->stream),
               "log-probabilities to the host");
    cuda_check(cudaEventRecord(b.copied, ctx->stream), "cudaEventRecord");
  }

  std::vector<int32_t> wait() override {
    ids_ = drawn_->wait();
    return ids_;
  }

  std::vector<RowLogprobs> logprobs() override {
    const Staging& b = buf_.get();
    NC_CHECK(b.host, "log-probabilities: logprobs() called twice");
    cuda_check(cudaEventSynchronize(b.copied), "waiting for the log-probabilities");
    std::vector<RowLogprobs> out(k_.size());
    const auto* slots = static_cast<const cuda::LogprobSlot*>(b.host);
    for (size_t r = 0; r < k_.size(); ++r) {
      if (k_[r] < 0) continue;
      const cuda::LogprobSlot& s = slots[r];
      out[r].token = r < ids_.size() ? ids_[r] : -1;
      out[r].logprob = s.token_logprob;
      for (int j = 0; j < k_[r] && s.top_ids[j] >= 0; ++j) {
        out[r].top_ids.push_back(s.top_ids[j]);
        out[r].top_logprobs.push_back(s.top_logprobs[j]);
      }
    }
    buf_.give_back();
    return out;
  }

 private:
  std::unique_ptr<PendingTokens> drawn_;
  std::vector<int32_t> k_;
  std::vector<int32_t> ids_;
  PooledStaging buf_;
};

Tensor upload_i32(const std::shared_ptr<Context>& ctx, const std::vector<int32_t>& v) {
  Tensor t = device_alloc(ctx, {int64_t(std::max<size_t>(v.size(), 1))}, DType::I32);
  if (!v.empty())
    // From pageable memory: staged before the call returns, so `v` may go at once.
    cuda_check(
        cudaMemcpyAsync(t.data(), v.data(), v.size() * 4, cudaMemcpyHostToDevice, ctx->stream),
        "copy_from_host");
  return t;
}

}  // namespace

DeviceRowExtras::DeviceRowExtras(std::shared_ptr<Context> ctx, Tensor logits,
                                 const std::vector<RowSampling>& rows)
    : ctx_(std::move(ctx)), logits_(std::move(logits)) {
  NC_CHECK(logits_.ndim() == 2 && int64_t(rows.size()) == logits_.dim(0),
           "sample_tokens: logits {} with {} rows of sampling parameters",
           shape_str(logits_.shape()), rows.size());
  expect_cuda(logits_, "sample_tokens");
  logits_.expect_dtype(DType::F32, "sample_tokens");
  logits_.expect_contiguous("sample_tokens");
  rows_ = int(rows.size());
  vocab_ = int(logits_.dim(1));
  for (int r = 0; r < rows_; ++r) {
    const RowSampling& p = rows[size_t(r)];
    p.validate();
    k_.push_back(p.logprobs);
    any_logprobs_ |= p.logprobs >= 0;
    bias_begin_.push_back(int32_t(bias_id_.size()));
    // One entry an id (an id given twice gets the sum of its values: the host adds them one
    // after the other, which may differ in the last bit; the API's JSON object gives each id
    // once); ids outside the row are ignored, as the host path does.
    std::vector<std::pair<int32_t, float>> b = p.bias;
    std::stable_sort(b.begin(), b.end(), [](auto& x, auto& y) { return x.first < y.first; });
    for (size_t j = 0; j < b.size(); ++j) {
      if (b[j].first < 0 || b[j].first >= vocab_) continue;
      if (!bias_id_.empty() && bias_row_.back() == r && bias_id_.back() == b[j].first) {
        bias_value_.back() += b[j].second;
        continue;
      }
      bias_row_.push_back(r);
      bias_id_.push_back(b[j].first);
      bias_value_.push_back(b[j].second);
    }
  }
  bias_begin_.push_back(int32_t(bias_id_.size()));
  if (!any_logprobs_) return;
  k_dev_ = upload_i32(ctx_, k_);
  slots_dev_ = device_alloc(ctx_, {int64_t(rows_) * kSlotWords}, DType::I32);
  k_call([&] {
    cuda::logprob_top_k(logits_.ptr<float>(), rows_, vocab_, k_dev_.ptr<int32_t>(),
                        static_cast<cuda::LogprobSlot*>(slots_dev_.data()), ctx_->stream);
  });
}

void DeviceRowExtras::apply_bias() {
  const int n = int(bias_id_.size());
  if (n == 0) return;
  // One upload: rows, ids, values (as bits), then each row's first entry.
  std::vector<int32_t> packed;
  packed.reserve(size_t(3 * n + rows_ + 1));
  packed.insert(packed.end(), bias_row_.begin(), bias_row_.end());
  packed.insert(packed.end(), bias_id_.begin(), bias_id_.end());
  for (float v : bias_value_) {
    int32_t bits;
    std::memcpy(&bits, &v, 4);
    packed.push_back(bits);
  }
  packed.insert(packed.end(), bias_begin_.begin(), bias_begin_.end());
  bias_dev_ = upload_i32(ctx_, packed);
  raw_dev_ = device_alloc(ctx_, {int64_t(n)}, DType::F32);
  const int32_t* d = bias_dev_.ptr<int32_t>();
  k_call([&] {
    cuda::apply_logit_bias(logits_.ptr<float>(), vocab_, d, d + n,
                           reinterpret_cast<const float*>(d + 2 * n), n, raw_dev_.ptr<float>(),
                           ctx_->stream);
  });
}

std::unique_ptr<PendingTokens> DeviceRowExtras::finish(const Tensor& ids,
                                                       std::unique_ptr<PendingTokens> drawn) {
  if (!any_logprobs_) return drawn;
  const int n = int(bias_id_.size());
  const int32_t* d = bias_dev_.defined() ? bias_dev_.ptr<int32_t>() : nullptr;
  k_call([&] {
    cuda::token_logprobs(logits_.ptr<float>(), rows_, vocab_, k_dev_.ptr<int32_t>(),
                         ids.ptr<int32_t>(), d ? d + 3 * n : nullptr, d ? d + n : nullptr,
                         raw_dev_.defined() ? raw_dev_.ptr<float>() : nullptr,
                         static_cast<cuda::LogprobSlot*>(slots_dev_.data()), ctx_->stream);
  });
  return std::make_unique<PendingWithLogprobs>(ctx_, std::move(drawn), slots_dev_, k_);
}

}  // namespace nc::cuda_host

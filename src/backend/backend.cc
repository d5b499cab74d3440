// Backend's optional operations: host fallbacks and "not supported" errors.
#include "backend/backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>

#include "core/error.h"
// The host sampler's filter is the reference for filtered rows (a .cc-only dependency).
#include "backend/sampling_filter.h"
#include "core/random_init.h"
#include "kv/page_pool.h"

namespace nc {

int64_t Backend::free_memory_bytes() { return physical_memory_bytes(); }

void Backend::fill_uniform(Tensor t, uint64_t seed, float low, float high) {
  t.expect_contiguous("fill_uniform");
  const int64_t n = t.numel();
  const float span = high - low;
  auto value = [&](int64_t i) { return low + span * uniform_hash01(seed, uint64_t(i)); };
  switch (t.dtype()) {
    case DType::F32: {
      std::vector<float> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[size_t(i)] = value(i);
      copy_from_host(t, v.data());
      break;
    }
    case DType::BF16:
    case DType::F16: {
      std::vector<uint16_t> v(static_cast<size_t>(n));
      const bool bf = t.dtype() == DType::BF16;
      for (int64_t i = 0; i < n; ++i)
        v[size_t(i)] = bf ? f32_to_bf16(value(i)) : f32_to_f16(value(i));
      copy_from_host(t, v.data());
      break;
    }
    default:
      fail("fill_uniform: dtype {} is not a float type", dtype_name(t.dtype()));
  }
}

void RowSampling::validate() const {
  NC_CHECK(std::isfinite(inv_temperature) && inv_temperature >= 0,
           "sample_tokens: inverse temperature must be finite and >= 0, got {}", inv_temperature);
  NC_CHECK(top_p > 0 && top_p <= 1, "sample_tokens: top_p must be in (0, 1], got {}", top_p);
  NC_CHECK(min_p >= 0 && min_p <= 1, "sample_tokens: min_p must be in [0, 1], got {}", min_p);
}

namespace {

// The Gumbel-max score of id i: logit * inv_t plus Gumbel noise -log(-log(u)), u in (0, 1).
float gumbel_score(float logit, float inv_t, uint64_t seed, int64_t i) {
  const float u = uniform_hash01(seed, uint64_t(i)) + 0.5f / 16777216.0f;
  return logit * inv_t - std::log(-std::log(u));
}

}  // namespace

// 0 when every logit is -inf or NaN.
int32_t draw_token(std::span<const float> row, const RowSampling& p) {
  const int64_t V = int64_t(row.size());
  float best = -INFINITY;
  int32_t tok = 0;
  auto consider = [&](int64_t i) {
    const float s = p.inv_temperature == 0.0f
                        ? row[size_t(i)]
                        : gumbel_score(row[size_t(i)], p.inv_temperature, p.seed, i);
    if (s > best) best = s, tok = int32_t(i);  // ids in increasing order: ties keep the lower id
  };
  if (!p.filtered()) {
    for (int64_t i = 0; i < V; ++i) consider(i);
    return tok;
  }
  if (std::none_of(row.begin(), row.end(), [](float x) { return x > -INFINITY; })) return 0;
  // The candidates of the host sampler; Gumbel-max over a subset draws from the subset's
  // renormalised probabilities.
  const CandidateFilter f{1.0f / p.inv_temperature, p.top_k, p.top_p, p.min_p};
  std::vector<int32_t> ids = filter_candidates(row, f).ids;
  std::sort(ids.begin(), ids.end());
  for (int32_t i : ids) consider(i);
  return tok;
}

namespace {

void check_sampling_rows(const Tensor& logits, const std::vector<RowSampling>& rows) {
  NC_CHECK(logits.ndim() == 2 && int64_t(rows.size()) == logits.dim(0),
           "sample_tokens: logits {} with {} rows of sampling parameters",
           shape_str(logits.shape()), rows.size());
}

}  // namespace

std::vector<int32_t> Backend::sample_tokens(const Tensor& logits,
                                            const std::vector<RowSampling>& rows) {
  check_sampling_rows(logits, rows);
  const int64_t R = logits.dim(0);
  if (R == 0) return {};
  return sample_tokens_async(logits, rows, alloc({R}, DType::I32))->wait();
}

std::vector<int32_t> Backend::sample_on_host(const Tensor& logits,
                                             const std::vector<RowSampling>& rows) {
  check_sampling_rows(logits, rows);
  for (const RowSampling& p : rows) p.validate();
  const std::vector<float> x = to_host_f32(logits);
  const int64_t R = logits.dim(0), V = logits.dim(1);
  std::vector<int32_t> out(size_t(R), 0);
  for (int64_t r = 0; r < R; ++r)
    out[size_t(r)] =
        draw_token(std::span<const float>(x.data() + r * V, size_t(V)), rows[size_t(r)]);
  return out;
}

namespace {

class ReadyTokens : public PendingTokens {
 public:
  explicit ReadyTokens(std::vector<int32_t> ids) : ids_(std::move(ids)) {}
  std::vector<int32_t> wait() override { return std::move(ids_); }

 private:
  std::vector<int32_t> ids_;
};

}  // namespace

std::unique_ptr<PendingTokens> ready_tokens(std::vector<int32_t> ids) {
  return std::make_unique<ReadyTokens>(std::move(ids));
}

std::unique_ptr<PendingTokens> Backend::sample_tokens_async(const Tensor& logits,
                                                            const std::vector<RowSampling>& rows,
                                                            Tensor ids) {
  std::vector<int32_t> out = sample_on_host(logits, rows);
  NC_CHECK(ids.dtype() == DType::I32 && ids.numel() == int64_t(out.size()),
           "sample_tokens_async: ids tensor {} for {} rows", shape_str(ids.shape()), out.size());
  copy_from_host(ids, out.data());
  return ready_tokens(std::move(out));
}

void Backend::begin_capture() {
  fail("backend {}: CUDA graphs are not supported", name());
}

void Backend::end_capture(int) {
  fail("backend {}: CUDA graphs are not supported", name());
}

void Backend::replay(int) {
  fail("backend {}: CUDA graphs are not supported", name());
}

}  // namespace nc

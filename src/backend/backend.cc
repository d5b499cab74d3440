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

int64_t Backend::free_memory_bytes() {
  return physical_memory_bytes();
}

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
  NC_CHECK(logprobs >= -1 && logprobs <= kMaxLogprobs,
           "sample_tokens: logprobs must be in [-1, {}], got {}", kMaxLogprobs, logprobs);
  for (const auto& [id, v] : bias)
    NC_CHECK(id >= 0 && std::isfinite(v), "sample_tokens: bad bias {} for token {}", v, id);
}

namespace {

// The Gumbel-max score of id i: logit * inv_t plus Gumbel noise -log(-log(u)), u in (0, 1).
float gumbel_score(float logit, float inv_t, uint64_t seed, int64_t i) {
  const float u = uniform_hash01(seed, uint64_t(i)) + 0.5f / 16777216.0f;
  return logit * inv_t - std::log(-std::log(u));
}

}  // namespace

namespace {

// 0 when every logit is -inf or NaN.
int32_t draw_unbiased(std::span<const float> row, const RowSampling& p) {
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
    if (p.inv_temperature == 0.0f) {
      for (int64_t i = 0; i < V; ++i) consider(i);
      return tok;
    }
    // Gumbel-max without two logarithms per id: the noise of a u below 1 is at most
    // -log(-log(1 - 2^-24)) < 16.7, so an id whose scaled logit plus kNoiseBound is below a score
    // already drawn can neither win nor tie, and is skipped unless its u rounds to 1 (noise +inf).
    // The winner and its tie-breaking are exactly those of the full scan.
    constexpr float kNoiseBound = 17.5f;
    const int64_t top = std::max_element(row.begin(), row.end()) - row.begin();
    const float floor = gumbel_score(row[size_t(top)], p.inv_temperature, p.seed, top);
    for (int64_t i = 0; i < V; ++i) {
      if (row[size_t(i)] * p.inv_temperature + kNoiseBound < floor &&
          uniform_hash01(p.seed, uint64_t(i)) + 0.5f / 16777216.0f < 1.0f)
        continue;
      consider(i);
    }
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

}  // namespace

int32_t draw_token(std::span<const float> row, const RowSampling& p) {
  if (p.bias.empty() && p.token_bitmask.empty()) return draw_unbiased(row, p);
  std::vector<float> biased(row.begin(), row.end());
  for (const auto& [id, v] : p.bias)
    if (id >= 0 && size_t(id) < biased.size()) biased[size_t(id)] += v;
  if (!p.token_bitmask.empty()) apply_token_bitmask_row(biased, p.token_bitmask);
  return draw_unbiased(biased, p);
}

void Backend::apply_token_bitmask(Tensor, const Tensor&) {
  fail_as(ErrorKind::Unsupported, "backend {}: apply_token_bitmask is not implemented", name());
}

std::unique_ptr<PendingTokens> draw_on_host(std::span<const float> x, int64_t V,
                                            const std::vector<RowSampling>& rows) {
  NC_CHECK(int64_t(x.size()) == int64_t(rows.size()) * V,
           "draw_on_host: {} logits for {} rows of {}", x.size(), rows.size(), V);
  std::vector<int32_t> ids(rows.size(), 0);
  std::vector<RowLogprobs> lps;
  const bool any =
      std::any_of(rows.begin(), rows.end(), [](const RowSampling& p) { return p.logprobs >= 0; });
  if (any) lps.resize(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    const std::span<const float> row(x.data() + int64_t(r) * V, size_t(V));
    ids[r] = draw_token(row, rows[r]);
    if (rows[r].logprobs >= 0) lps[r] = row_logprobs(row, ids[r], rows[r].logprobs);
  }
  return ready_tokens(std::move(ids), std::move(lps));
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

std::unique_ptr<PendingTokens> Backend::sample_on_host(const Tensor& logits,
                                                       const std::vector<RowSampling>& rows) {
  check_sampling_rows(logits, rows);
  for (const RowSampling& p : rows) p.validate();
  if (logits.device() == Device::CPU && logits.dtype() == DType::F32 && logits.is_contiguous())
    // Host logits are read where they are: no copy (and no fresh mapping of a large one per step).
    return draw_on_host({logits.ptr<float>(), size_t(logits.numel())}, logits.dim(1), rows);
  const std::vector<float> x = to_host_f32(logits);
  return draw_on_host(x, logits.dim(1), rows);
}

namespace {

class ReadyTokens : public PendingTokens {
 public:
  ReadyTokens(std::vector<int32_t> ids, std::vector<RowLogprobs> lps)
      : ids_(std::move(ids)), lps_(std::move(lps)) {}
  std::vector<int32_t> wait() override { return std::move(ids_); }
  std::vector<RowLogprobs> logprobs() override { return std::move(lps_); }

 private:
  std::vector<int32_t> ids_;
  std::vector<RowLogprobs> lps_;
};

}  // namespace

std::unique_ptr<PendingTokens> ready_tokens(std::vector<int32_t> ids,
                                            std::vector<RowLogprobs> logprobs) {
  return std::make_unique<ReadyTokens>(std::move(ids), std::move(logprobs));
}

std::unique_ptr<PendingTokens> Backend::sample_tokens_async(const Tensor& logits,
                                                            const std::vector<RowSampling>& rows,
                                                            Tensor ids) {
  std::unique_ptr<PendingTokens> drawn = sample_on_host(logits, rows);
  std::vector<int32_t> out = drawn->wait();
  NC_CHECK(ids.dtype() == DType::I32 && ids.numel() == int64_t(out.size()),
           "sample_tokens_async: ids tensor {} for {} rows", shape_str(ids.shape()), out.size());
  copy_from_host(ids, out.data());
  return ready_tokens(std::move(out), drawn->logprobs());
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

namespace nc {

// The ops only some models need: a backend without them says so by name.
void Backend::moe_route(const Tensor&, const Tensor&, const MoeRouting&, Tensor, Tensor) {
  fail_as(ErrorKind::Unsupported, "backend {}: moe_route (mixture of experts) is not implemented",
          name());
}

void Backend::moe_experts(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                          Tensor) {
  fail_as(ErrorKind::Unsupported, "backend {}: moe_experts (mixture of experts) is not implemented",
          name());
}

void Backend::silu_mul_linear(const Tensor& gate_up, const Tensor& w, const Tensor& bias,
                              Tensor out, Tensor act) {
  NC_CHECK(gate_up.ndim() == 2 && gate_up.dim(1) % 2 == 0,
           "silu_mul_linear: gate_up {} is not [T, 2I]", shape_str(gate_up.shape()));
  const Shape want{gate_up.dim(0), gate_up.dim(1) / 2};
  if (!act.defined()) act = alloc(want, dtype());
  act.expect_shape(want, "silu_mul_linear activation");
  silu_and_mul(gate_up, act);
  linear(act, w, bias, out);
}

void Backend::add_rmsnorm_linear(Tensor x, const AddNorm& norm, const Tensor& w, const Tensor& bias,
                                 Tensor out) {
  add_rmsnorm(x, norm.residual, norm.weight, norm.eps);
  linear(x, w, bias, out);
}

void Backend::silu_mlp(const Tensor& x, const Tensor& gate_up_w, const Tensor& down_w,
                       Tensor gate_up, Tensor act, Tensor out, const AddNorm* norm) {
  if (norm != nullptr) {
    add_rmsnorm_linear(x, *norm, gate_up_w, Tensor(), gate_up);
  } else {
    linear(x, gate_up_w, Tensor(), gate_up);
  }
  silu_mul_linear(gate_up, down_w, Tensor(), out, act);
}

bool Backend::qkv_split_norm_rope_append(const AttentionPlan&, Tensor, const Tensor& qkv,
                                         const Tensor& q_norm, const Tensor& k_norm, float eps,
                                         const Tensor& positions, const Tensor& cos_sin,
                                         int head_dim, Tensor q, Tensor k, Tensor v) {
  qkv_split_norm_rope(qkv, q_norm, k_norm, eps, positions, cos_sin, head_dim, q, k, v);
  return false;
}

bool Backend::decode_layer(const AttentionPlan&, Tensor, const DecodeLayerWeights&,
                           const DecodeLayerIo&) {
  return false;
}

void Backend::attention_appended(const AttentionPlan&, const Tensor&, const Tensor&, const Tensor&,
                                 Tensor, Tensor) {
  fail_as(ErrorKind::Unsupported,
          "backend {}: attention_appended without a qkv_split_norm_rope_append that appended",
          name());
}

void Backend::gelu_tanh_and_mul(const Tensor&, Tensor) {
  fail_as(ErrorKind::Unsupported, "backend {}: gelu_tanh_and_mul is not implemented", name());
}
void Backend::scale(Tensor, float) {
  fail_as(ErrorKind::Unsupported, "backend {}: scale is not implemented", name());
}
void Backend::soft_cap(Tensor, float) {
  fail_as(ErrorKind::Unsupported, "backend {}: soft_cap is not implemented", name());
}

Tensor Backend::upload_fp8_linear(const Fp8Weight&) {
  fail_as(ErrorKind::Unsupported,
          "backend {}: fp8 weights (--quantization fp8, or an FP8 checkpoint) are not supported "
          "on this backend; --quantization none dequantises an FP8 checkpoint",
          name());
}
void Backend::head_linear(const Tensor&, const Tensor&, Tensor) {
  fail_as(ErrorKind::Unsupported, "backend {}: MLA (head_linear) is not implemented", name());
}
void Backend::mla_rope_norm(const Tensor&, const Tensor&, const Tensor&, float, const Tensor&,
                            const Tensor&, bool, int, Tensor, Tensor) {
  fail_as(ErrorKind::Unsupported, "backend {}: MLA (mla_rope_norm) is not implemented", name());
}
void Backend::mla_attention_values(const AttentionPlan& plan, const Tensor& q, Tensor q_mla,
                                   const Tensor& latent, Tensor kv_pages, const Tensor& w_uk_t,
                                   const Tensor& w_uv, Tensor o_lat, Tensor attn) {
  head_linear(q, w_uk_t, q_mla);  // q_nope -> the first Dl values of each q_mla head
  mla_attention(plan, q_mla, latent, kv_pages, o_lat);
  head_linear(o_lat, w_uv, attn);
}
void Backend::mla_attention(const AttentionPlan&, const Tensor&, const Tensor&, Tensor, Tensor) {
  fail_as(ErrorKind::Unsupported, "backend {}: MLA attention is not implemented", name());
}

void Backend::update_page_bounds(const Tensor&, const KVCacheShape&, const Tensor&, Tensor) {
  fail_as(ErrorKind::Unsupported,
          "backend {}: update_page_bounds (sparse attention) is not implemented", name());
}

std::unique_ptr<AttentionPlan> Backend::plan_sparse_attention(const AttentionStep&,
                                                              const AttentionShape&,
                                                              const PageSelection&) {
  fail_as(ErrorKind::Unsupported, "backend {}: sparse attention is not implemented", name());
}

void Backend::sparse_attention(const AttentionPlan&, const Tensor&, const Tensor&, const Tensor&,
                               Tensor, const Tensor&, Tensor) {
  fail_as(ErrorKind::Unsupported, "backend {}: sparse attention is not implemented", name());
}

void Backend::shift_key_positions(Tensor, const KVCacheShape&, const Tensor&, const Tensor&) {
  fail_as(ErrorKind::Unsupported,
          "backend {}: shift_key_positions (the streaming window) is not implemented", name());
}

}  // namespace nc

// The CPU backend: float32 activations; weights float32 or kept as the checkpoint stores them
// (f16, bf16, GGML blocks), multiplied by cpu_matmul (one fixed-order dot product per output
// element: batch invariant); paged attention threaded by (row, head), its inner loops in AVX2
// where the CPU has it (attention_rows.h: the portable loops' bits). It is the
// reference the CUDA backend is checked against, and it runs the whole engine in CI.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numbers>
#include <tuple>

#include "backend/backend.h"
#include "backend/cpu/cpu_attention.h"
#include "backend/cpu/cpu_fp8.h"
#include "backend/cpu/cpu_kv_shift.h"
#include "backend/cpu/cpu_matmul.h"
#include "backend/cpu/cpu_mla.h"
#include "backend/cpu/cpu_moe.h"
#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/cpu_sparse.h"
#include "backend/op_checks.h"
#include "backend/sampling_filter.h"
#include "core/thread_pool.h"
#include "kv/head_selection.h"

namespace nc {

namespace {

// Row-wise ops over fewer values than this run on the caller's thread: waking the pool would
// cost more than it saves (an estimate; these ops are a few percent of a step).
constexpr int64_t kParallelMinValues = 1 << 16;

// fn(begin, end) over rows [0, n) of `width` values each, split across the pool's threads when
// the op is large enough. Rows are independent, so the split never changes a result.
void for_rows(int64_t n, int64_t width, const std::function<void(int64_t, int64_t)>& fn) {
  if (n * width < kParallelMinValues || n < 2) {
    fn(0, n);
    return;
  }
  ThreadPool::global().parallel_for(n, fn);
}

class CpuAttentionPlan : public AttentionPlan {
 public:
  AttentionStep step;
  AttentionShape shape;
};

class CpuSparsePlan : public CpuAttentionPlan {
 public:
  PageSelection sel;
};

float* f32(const Tensor& t, const char* what) {
  t.expect_dtype(DType::F32, what);
  t.expect_device(Device::CPU, what);
  t.expect_contiguous(what);
  return t.ptr<float>();
}

// A 2-D weight of any kept dtype as cpu_matmul reads it.
CpuWeightView weight_view(const Tensor& w, const char* what) {
  w.expect_device(Device::CPU, what);
  w.expect_contiguous(what);
  NC_CHECK(w.ndim() == 2, "{}: weight of shape {} is not a matrix", what, shape_str(w.shape()));
  return CpuWeightView{w.dtype(), w.dim(0), w.dim(1), w.data()};
}

bool kept_dtype(DType t) {
  return t != DType::I32;
}

void rmsnorm_row(const float* x, const float* w, float eps, int64_t n, float* out) {
  float ss = 0.0f;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / float(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = w[i] * (x[i] * inv);
}

// Rotate-half rope of one head of 2 * half values in place; c, s: the position's cos and sin.
void rope_head(float* v, const float* c, const float* s, int half) {
  for (int d = 0; d < half; ++d) {
    const float x1 = v[d], x2 = v[d + half];
    v[d] = x1 * c[d] - x2 * s[d];
    v[d + half] = x2 * c[d] + x1 * s[d];
  }
}

}  // namespace

void cpu_rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& cos_sin, int head_dim) {
  const int64_t T = positions.numel(), max_pos = cos_sin.dim(0);
  NC_CHECK(cos_sin.dim(1) == head_dim, "rope: cos/sin table has {} columns for head_dim {}",
           cos_sin.dim(1), head_dim);
  const int32_t* pos = positions.ptr<int32_t>();
  const float* cs = f32(cos_sin, "rope table");
  for (Tensor* t : {&q, &k}) {
    const int64_t heads = t->dim(-1) / head_dim;
    NC_CHECK(t->dim(0) == T, "rope: {} rows for {} positions", t->dim(0), T);
    float* p = f32(*t, "rope");
    const int half = head_dim / 2;
    for (int64_t i = 0; i < T; ++i) {
      NC_CHECK(pos[i] >= 0 && pos[i] < max_pos, "rope: position {} outside [0, {})", pos[i],
               max_pos);
      const float* c = cs + int64_t(pos[i]) * head_dim;
      const float* s = c + half;
      for (int64_t h = 0; h < heads; ++h) rope_head(p + (i * heads + h) * head_dim, c, s, half);
    }
  }
}

namespace {

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  Device device() const override { return Device::CPU; }
  DType dtype() const override { return DType::F32; }

  Tensor alloc(const Shape& shape, DType dtype) override {
    return Tensor::empty_host(shape, dtype);
  }

  Tensor upload(const HostTensor& t) override {
    if (t.is_raw()) {
      NC_CHECK(kept_dtype(t.dtype), "upload: dtype {} is not a weight format", dtype_name(t.dtype));
      Tensor out = Tensor::empty_host(t.shape, t.dtype);
      NC_CHECK(t.raw.size() == out.nbytes(), "upload: {} bytes of {} for shape {}", t.raw.size(),
               dtype_name(t.dtype), shape_str(t.shape));
      std::memcpy(out.data(), t.raw.data(), t.raw.size());
      return out;
    }
    Tensor out = Tensor::empty_host(t.shape, DType::F32);
    NC_CHECK(int64_t(t.data.size()) == out.numel(), "upload: {} values for shape {}", t.data.size(),
             shape_str(t.shape));
    std::copy(t.data.begin(), t.data.end(), out.ptr<float>());
    return out;
  }
  bool keeps_weight_dtype(DType t) const override { return kept_dtype(t); }
  // The packed layout of backend/fp8_weight.h in one host allocation (operator new's 16-byte
  // alignment suits the float scales at their 16-byte offset).
  Tensor upload_fp8_linear(const Fp8Weight& w) override {
    std::vector<uint8_t> packed = pack_fp8_weight(w);
    std::shared_ptr<void> mem(new uint8_t[packed.size()],
                              [](void* p) { delete[] static_cast<uint8_t*>(p); });
    std::memcpy(mem.get(), packed.data(), packed.size());
    return Tensor::adopt(std::move(mem), {w.rows, w.cols}, DType::F8E4M3, Device::CPU);
  }

  void copy_from_host(Tensor dst, const void* src) override {
    dst.expect_contiguous("copy_from_host");
    std::memcpy(dst.data(), src, dst.nbytes());
  }

  bool supports_kv_dtype(DType t) const override { return t == DType::F32 || t == DType::F8E4M3; }
  std::vector<float> to_host_f32(const Tensor& t) override {
    const float* p = f32(t, "to_host_f32");
    return std::vector<float>(p, p + t.numel());
  }

  void embedding(const Tensor& table, const Tensor& ids, Tensor out) override {
    const int64_t V = table.dim(0), H = table.dim(1), T = ids.numel();
    out.expect_shape({T, H}, "embedding");
    const CpuWeightView w = weight_view(table, "embedding");
    const int32_t* id = ids.ptr<int32_t>();
    float* o = f32(out, "embedding");
    for (int64_t t = 0; t < T; ++t) {
      NC_CHECK(id[t] >= 0 && id[t] < V, "embedding: token id {} outside [0, {})", id[t], V);
      cpu_weight_row(w, id[t], o + t * H);
    }
  }

  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) override {
    const int64_t H = x.dim(-1), N = x.numel() / H;
    weight.expect_shape({H}, "rmsnorm weight");
    const float *px = f32(x, "rmsnorm"), *pw = f32(weight, "rmsnorm");
    float* po = f32(out, "rmsnorm");
    for_rows(N, H, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) rmsnorm_row(px + r * H, pw, eps, H, po + r * H);
    });
  }

  void add_rmsnorm(Tensor x, Tensor residual, const Tensor& weight, float eps) override {
    const int64_t H = x.dim(-1), N = x.numel() / H;
    residual.expect_shape(x.shape(), "add_rmsnorm residual");
    float *px = f32(x, "add_rmsnorm"), *pr = f32(residual, "add_rmsnorm");
    const float* pw = f32(weight, "add_rmsnorm");
    for_rows(N, H, [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0 * H; i < r1 * H; ++i) pr[i] += px[i];
      for (int64_t r = r0; r < r1; ++r) rmsnorm_row(pr + r * H, pw, eps, H, px + r * H);
    });
  }

  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor out) override {
    const int64_t N = x.dim(0), K = x.dim(1), M = w.dim(0);
    NC_CHECK(w.dim(1) == K, "linear: input has {} features, weight {} expects {}", K,
             shape_str(w.shape()), w.dim(1));
    out.expect_shape({N, M}, "linear output");
    const float* px = f32(x, "linear");
    float* po = f32(out, "linear");
    if (w.dtype() == DType::F8E4M3)
      cpu_fp8_linear(px, N, K, w, po, ThreadPool::global());
    else
      cpu_matmul(px, N, weight_view(w, "linear"), po, ThreadPool::global());
    if (bias.defined()) {
      bias.expect_shape({M}, "linear bias");
      const float* pb = f32(bias, "linear bias");
      for (int64_t r = 0; r < N; ++r)
        for (int64_t j = 0; j < M; ++j) po[r * M + j] += pb[j];
    }
  }

  // Copies, then normalises in place, then rotates: the same float operations in the same order
  // as rmsnorm() over heads followed by rope(), so the results are bit-identical.
  void qkv_split_norm_rope(const Tensor& qkv, const Tensor& q_norm, const Tensor& k_norm, float eps,
                           const Tensor& positions, const Tensor& cos_sin, int head_dim, Tensor q,
                           Tensor k, Tensor v) override {
    const int64_t T = positions.numel(), D = head_dim, max_pos = cos_sin.dim(0);
    NC_CHECK(D > 0 && D % 2 == 0, "qkv_split_norm_rope: bad head_dim {}", D);
    const auto [QW, KW] =
        check_qkv_split_shapes(qkv, q_norm, k_norm, positions, cos_sin, head_dim, q, k, v);
    const float* in = f32(qkv, "qkv_split_norm_rope");
    const float* cs = f32(cos_sin, "qkv_split_norm_rope table");
    const float* qn = q_norm.defined() ? f32(q_norm, "q_norm") : nullptr;
    const float* kn = k_norm.defined() ? f32(k_norm, "k_norm") : nullptr;
    positions.expect_dtype(DType::I32, "qkv_split_norm_rope positions");
    const int32_t* pos = positions.ptr<int32_t>();
    float *pq = f32(q, "qkv_split_norm_rope q"), *pk = f32(k, "qkv_split_norm_rope k"),
          *pv = f32(v, "qkv_split_norm_rope v");
    const int half = head_dim / 2;
    for (int64_t i = 0; i < T; ++i) {
      NC_CHECK(pos[i] >= 0 && pos[i] < max_pos, "qkv_split_norm_rope: position {} outside [0, {})",
               pos[i], max_pos);
      const float* row = in + i * (QW + 2 * KW);
      const float* c = cs + int64_t(pos[i]) * D;
      std::copy_n(row + QW + KW, KW, pv + i * KW);
      for (auto [src, dst, width, norm] :
           {std::tuple{row, pq + i * QW, QW, qn}, std::tuple{row + QW, pk + i * KW, KW, kn}}) {
        std::copy_n(src, width, dst);
        for (int64_t h = 0; h < width / D; ++h) {
          float* x = dst + h * D;
          if (norm) rmsnorm_row(x, norm, eps, D, x);
          rope_head(x, c, c + half, half);
        }
      }
    }
  }

  void moe_route(const Tensor& logits, const Tensor& bias, const MoeRouting& r, Tensor ids,
                 Tensor weights) override {
    cpu_moe_route(logits, bias, r, ids, weights);
  }
  void moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const Tensor& gate_up,
                   const Tensor& down, Tensor out) override {
    cpu_moe_experts(x, ids, weights, gate_up, down, out);
  }

  void silu_and_mul(const Tensor& gate_up, Tensor out) override {
    const int64_t T = gate_up.dim(0), I = gate_up.dim(1) / 2;
    out.expect_shape({T, I}, "silu_and_mul output");
    const float* g = f32(gate_up, "silu_and_mul");
    float* o = f32(out, "silu_and_mul");
    for_rows(T, I, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t i = 0; i < I; ++i) {
          const float a = g[t * 2 * I + i], b = g[t * 2 * I + I + i];
          o[t * I + i] = a / (1.0f + std::exp(-a)) * b;
        }
    });
  }

  void gelu_tanh_and_mul(const Tensor& gate_up, Tensor out) override {
    const int64_t T = gate_up.dim(0), I = gate_up.dim(1) / 2;
    out.expect_shape({T, I}, "gelu_tanh_and_mul output");
    const float* g = f32(gate_up, "gelu_tanh_and_mul");
    float* o = f32(out, "gelu_tanh_and_mul");
    // PyTorch's gelu(approximate="tanh"), in double for a reference result.
    const double k = std::sqrt(2.0 / std::numbers::pi);
    for_rows(T, I, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t i = 0; i < I; ++i) {
          const double a = g[t * 2 * I + i], b = g[t * 2 * I + I + i];
          o[t * I + i] = float(0.5 * a * (1.0 + std::tanh(k * (a + 0.044715 * a * a * a))) * b);
        }
    });
  }

  void scale(Tensor x, float s) override {
    float* p = f32(x, "scale");
    for (int64_t i = 0; i < x.numel(); ++i) p[i] *= s;
  }

  void soft_cap(Tensor x, float cap) override {
    NC_CHECK(cap > 0, "soft_cap: cap must be positive, got {}", cap);
    float* p = f32(x, "soft_cap");
    for (int64_t i = 0; i < x.numel(); ++i) p[i] = float(cap * std::tanh(double(p[i]) / cap));
  }

  void copy_rows(const Tensor& src, Tensor dst) override {
    dst.expect_shape(src.shape(), "copy_rows");
    std::copy_n(f32(src, "copy_rows"), src.numel(), f32(dst, "copy_rows"));
  }

  void add(Tensor x, const Tensor& y) override {
    y.expect_shape(x.shape(), "add");
    float* px = f32(x, "add");
    const float* py = f32(y, "add");
    for (int64_t i = 0; i < x.numel(); ++i) px[i] += py[i];
  }

  void gather_rows(const Tensor& x, const Tensor& rows, Tensor out) override {
    const int64_t R = rows.numel(), H = x.dim(1);
    out.expect_shape({R, H}, "gather_rows");
    const int32_t* r = rows.ptr<int32_t>();
    const float* px = f32(x, "gather_rows");
    float* po = f32(out, "gather_rows");
    for (int64_t i = 0; i < R; ++i) {
      NC_CHECK(r[i] >= 0 && r[i] < x.dim(0), "gather_rows: row {} outside [0, {})", r[i], x.dim(0));
      std::copy_n(px + int64_t(r[i]) * H, H, po + i * H);
    }
  }

  void apply_token_bitmask(Tensor logits, const Tensor& bitmask) override {
    check_token_bitmask(logits, bitmask);
    const int64_t R = logits.dim(0), V = logits.dim(1), W = bitmask.dim(1);
    float* x = f32(logits, "apply_token_bitmask");
    const int32_t* m = bitmask.ptr<int32_t>();
    for (int64_t r = 0; r < R; ++r)
      apply_token_bitmask_row({x + r * V, size_t(V)}, {m + r * W, size_t(W)});
  }

  void scatter_ids(const Tensor& src, const Tensor& pairs, Tensor dst) override {
    src.expect_dtype(DType::I32, "scatter_ids");
    pairs.expect_dtype(DType::I32, "scatter_ids");
    dst.expect_dtype(DType::I32, "scatter_ids");
    NC_CHECK(pairs.numel() % 2 == 0, "scatter_ids: {} pair entries", pairs.numel());
    const int32_t* p = pairs.ptr<int32_t>();
    const int32_t* s = src.ptr<int32_t>();
    int32_t* d = dst.ptr<int32_t>();
    for (int64_t i = 0; i + 1 < pairs.numel(); i += 2) {
      NC_CHECK(p[i] >= 0 && p[i] < dst.numel() && p[i + 1] >= 0 && p[i + 1] < src.numel(),
               "scatter_ids: pair ({}, {}) outside [0, {}) x [0, {})", p[i], p[i + 1], dst.numel(),
               src.numel());
      d[p[i]] = s[p[i + 1]];
    }
  }

  std::unique_ptr<AttentionPlan> plan_attention(const AttentionStep& step,
                                                const AttentionShape& shape) override {
    NC_CHECK(!step.levels.empty(), "attention plan: no levels");
    NC_CHECK(shape.logits_soft_cap >= 0.0f && std::isfinite(shape.logits_soft_cap),
             "attention plan: logits_soft_cap {} (needs a finite value >= 0; 0: off)",
             shape.logits_soft_cap);
    NC_CHECK(shape.window_left >= -1, "attention plan: window_left {} (needs >= 0, or -1: off)",
             shape.window_left);
    NC_CHECK(std::isfinite(shape.sm_scale), "attention plan: sm_scale {} is not finite",
             shape.sm_scale);
    if (shape.latent_dim > 0) check_mla_shape(shape);
    for (const PagedKVBatch& level : step.levels)
      level.validate(step.num_tokens, shape.kv.page_size, shape.kv.num_pages);
    auto plan = std::make_unique<CpuAttentionPlan>();
    plan->step = step;
    plan->shape = shape;
    return plan;
  }

  void attention(const AttentionPlan& plan_base, const Tensor& q, const Tensor& k, const Tensor& v,
                 Tensor kv_pages, Tensor out) override {
    const auto& plan = static_cast<const CpuAttentionPlan&>(plan_base);
    const AttentionShape& s = plan.shape;
    const int64_t T = plan.step.num_tokens, Hq = s.num_qo_heads;
    NC_CHECK(s.latent_dim == 0, "attention: an MLA plan (latent_dim {}) runs mla_attention",
             s.latent_dim);
    out.expect_shape({T, Hq * s.head_dim}, "attention output");
    void* pages = append_kv(plan, k, v, kv_pages);
    cpu_attend_levels(plan.step, s, f32(q, "attention q"), pages, f32(out, "attention output"));
  }

  // Query-aware sparse decode attention (cpu_sparse.h): the plan keeps the selection's settings;
  // the run appends, selects from the bounds as they are, then attends as attention() does.
  std::unique_ptr<AttentionPlan> plan_sparse_attention(const AttentionStep& step,
                                                       const AttentionShape& shape,
                                                       const PageSelection& sel) override {
    NC_CHECK(shape.latent_dim == 0, "sparse attention: an MLA shape (latent_dim {})",
             shape.latent_dim);
    check_page_selection(step, sel, shape.kv.page_size, shape.window_left);
    if (sel.per_head) check_per_head_layout(shape.kv);
    auto plan = std::make_unique<CpuSparsePlan>();
    static_cast<CpuAttentionPlan&>(*plan) =
        static_cast<CpuAttentionPlan&>(*plan_attention(step, shape));
    plan->sel = sel;
    return plan;
  }

  void sparse_attention(const AttentionPlan& plan_base, const Tensor& q, const Tensor& k,
                        const Tensor& v, Tensor kv_pages, const Tensor& bounds,
                        Tensor out) override {
    const auto* plan = dynamic_cast<const CpuSparsePlan*>(&plan_base);
    NC_CHECK(plan != nullptr, "sparse_attention: the plan is not from plan_sparse_attention");
    const AttentionShape& s = plan->shape;
    out.expect_shape({plan->step.num_tokens, s.num_qo_heads * s.head_dim}, "attention output");
    void* pages = append_kv(*plan, k, v, kv_pages);
    const float* pq = f32(q, "attention q");
    if (plan->sel.per_head) {
      cpu_attend_head_sparse(plan->step, s, plan->sel, pq, pages, bounds,
                             f32(out, "attention output"));
      return;
    }
    const AttentionStep step = cpu_sparse_step(plan->step, s, plan->sel, pq, bounds);
    cpu_attend_levels(step, s, pq, pages, f32(out, "attention output"));
  }

  void update_page_bounds(const Tensor& kv_pages, const KVCacheShape& kv, const Tensor& page_slots,
                          Tensor bounds) override {
    cpu_update_page_bounds(kv_pages, kv, page_slots, bounds);
  }

  // Appends the step's K/V into the page tensor (float32, or e4m3 codes for an fp8 cache) and
  // returns its data.
  void* append_kv(const CpuAttentionPlan& plan, const Tensor& k, const Tensor& v, Tensor pages) {
    const KVCacheShape& kv = plan.shape.kv;
    const PagedKVBatch& own = plan.step.levels.back();
    if (!kv.fp8) {
      float* p = f32(pages, "attention kv pages");
      cpu_append_kv(own, kv, f32(k, "attention k"), f32(v, "attention v"), p);
      return p;
    }
    pages.expect_dtype(DType::F8E4M3, "attention kv pages (an fp8 cache)");
    auto* p = static_cast<uint8_t*>(pages.data());
    cpu_append_kv_fp8(own, kv, f32(k, "attention k"), f32(v, "attention v"), p);
    return p;
  }

  void head_linear(const Tensor& x, const Tensor& w, Tensor out) override {
    cpu_head_linear(x, w, out);
  }
  void mla_rope_norm(const Tensor& q, const Tensor& kv_a, const Tensor& kv_norm, float eps,
                     const Tensor& positions, const Tensor& cos_sin, bool interleaved, int nope_dim,
                     Tensor q_mla, Tensor latent) override {
    cpu_mla_rope_norm(q, kv_a, kv_norm, eps, positions, cos_sin, interleaved, nope_dim, q_mla,
                      latent);
  }
  void mla_attention(const AttentionPlan& plan_base, const Tensor& q_mla, const Tensor& latent,
                     Tensor kv_pages, Tensor out) override {
    const auto& plan = static_cast<const CpuAttentionPlan&>(plan_base);
    cpu_mla_attention(plan.step, plan.shape, q_mla, latent, kv_pages, out);
  }
  void mla_attention_values(const AttentionPlan& plan_base, const Tensor& q, Tensor q_mla,
                            const Tensor& latent, Tensor kv_pages, const Tensor& w_uk_t,
                            const Tensor& w_uv, Tensor /*o_lat*/, Tensor attn) override {
    const auto& plan = static_cast<const CpuAttentionPlan&>(plan_base);
    cpu_mla_attention_values(plan.step, plan.shape, q, q_mla, latent, kv_pages, w_uk_t, w_uv, attn);
  }
  void shift_key_positions(Tensor kv_pages, const KVCacheShape& kv, const Tensor& shifts,
                           const Tensor& inv_freq) override {
    cpu_shift_key_positions(kv_pages, kv, shifts, inv_freq);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() {
  return std::make_unique<CpuBackend>();
}

}  // namespace nc

// The CPU backend: float32 activations; weights float32 or kept as the checkpoint stores them
// (f16, bf16, GGML blocks), multiplied by cpu_matmul (one fixed-order dot product per output
// element: batch invariant); paged attention threaded by (row, head), its inner loops in AVX2
// where the CPU has it (attention_rows.h: the portable loops' bits). It is the
// reference the CUDA backend is checked against, and it runs the whole engine in CI.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/backend.h"
#include "backend/cpu/cpu_attention.h"
#include "backend/cpu/cpu_fp8.h"
#include "backend/cpu/cpu_kv_shift.h"
#include "backend/cpu/cpu_matmul.h"
#include "backend/cpu/cpu_mla.h"
#include "backend/cpu/cpu_moe.h"
#include "backend/cpu/cpu_rowwise.h"
#include "backend/cpu/cpu_sparse.h"
#include "backend/op_checks.h"
#include "backend/sampling_filter.h"
#include "core/thread_pool.h"
#include "kv/head_selection.h"

namespace nc {

namespace {

class CpuAttentionPlan : public AttentionPlan {
 public:
  AttentionStep step;
  AttentionShape shape;
};

class CpuSparsePlan : public CpuAttentionPlan {
 public:
  PageSelection sel;
};

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
    const float* p = cpu_f32(t, "to_host_f32");
    return std::vector<float>(p, p + t.numel());
  }

  void embedding(const Tensor& table, const Tensor& ids, Tensor out) override {
    const int64_t V = table.dim(0), H = table.dim(1), T = ids.numel();
    out.expect_shape({T, H}, "embedding");
    const CpuWeightView w = weight_view(table, "embedding");
    const int32_t* id = ids.ptr<int32_t>();
    float* o = cpu_f32(out, "embedding");
    for (int64_t t = 0; t < T; ++t) {
      NC_CHECK(id[t] >= 0 && id[t] < V, "embedding: token id {} outside [0, {})", id[t], V);
      cpu_weight_row(w, id[t], o + t * H);
    }
  }

  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) override {
    cpu_rmsnorm(x, weight, eps, out);
  }
  void add_rmsnorm(Tensor x, Tensor residual, const Tensor& weight, float eps) override {
    cpu_add_rmsnorm(x, residual, weight, eps);
  }

  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor out) override {
    const int64_t N = x.dim(0), K = x.dim(1), M = w.dim(0);
    NC_CHECK(w.dim(1) == K, "linear: input has {} features, weight {} expects {}", K,
             shape_str(w.shape()), w.dim(1));
    out.expect_shape({N, M}, "linear output");
    const float* px = cpu_f32(x, "linear");
    float* po = cpu_f32(out, "linear");
    if (w.dtype() == DType::F8E4M3)
      cpu_fp8_linear(px, N, K, w, po, ThreadPool::global());
    else
      cpu_matmul(px, N, weight_view(w, "linear"), po, ThreadPool::global());
    if (bias.defined()) {
      bias.expect_shape({M}, "linear bias");
      const float* pb = cpu_f32(bias, "linear bias");
      for (int64_t r = 0; r < N; ++r)
        for (int64_t j = 0; j < M; ++j) po[r * M + j] += pb[j];
    }
  }

  void qkv_split_norm_rope(const Tensor& qkv, const Tensor& q_norm, const Tensor& k_norm, float eps,
                           const Tensor& positions, const Tensor& cos_sin, int head_dim, Tensor q,
                           Tensor k, Tensor v) override {
    cpu_qkv_split_norm_rope(qkv, q_norm, k_norm, eps, positions, cos_sin, head_dim, q, k, v);
  }

  void moe_route(const Tensor& logits, const Tensor& bias, const MoeRouting& r, Tensor ids,
                 Tensor weights) override {
    cpu_moe_route(logits, bias, r, ids, weights);
  }
  void moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const Tensor& gate_up,
                   const Tensor& down, Tensor out) override {
    cpu_moe_experts(x, ids, weights, gate_up, down, out);
  }

  void silu_and_mul(const Tensor& gate_up, Tensor out) override { cpu_silu_and_mul(gate_up, out); }
  void gelu_tanh_and_mul(const Tensor& gate_up, Tensor out) override {
    cpu_gelu_tanh_and_mul(gate_up, out);
  }

  void scale(Tensor x, float s) override {
    float* p = cpu_f32(x, "scale");
    for (int64_t i = 0; i < x.numel(); ++i) p[i] *= s;
  }

  void soft_cap(Tensor x, float cap) override {
    NC_CHECK(cap > 0, "soft_cap: cap must be positive, got {}", cap);
    float* p = cpu_f32(x, "soft_cap");
    for (int64_t i = 0; i < x.numel(); ++i) p[i] = float(cap * std::tanh(double(p[i]) / cap));
  }

  void copy_rows(const Tensor& src, Tensor dst) override {
    dst.expect_shape(src.shape(), "copy_rows");
    std::copy_n(cpu_f32(src, "copy_rows"), src.numel(), cpu_f32(dst, "copy_rows"));
  }

  void add(Tensor x, const Tensor& y) override {
    y.expect_shape(x.shape(), "add");
    float* px = cpu_f32(x, "add");
    const float* py = cpu_f32(y, "add");
    for (int64_t i = 0; i < x.numel(); ++i) px[i] += py[i];
  }

  void gather_rows(const Tensor& x, const Tensor& rows, Tensor out) override {
    const int64_t R = rows.numel(), H = x.dim(1);
    out.expect_shape({R, H}, "gather_rows");
    const int32_t* r = rows.ptr<int32_t>();
    const float* px = cpu_f32(x, "gather_rows");
    float* po = cpu_f32(out, "gather_rows");
    for (int64_t i = 0; i < R; ++i) {
      NC_CHECK(r[i] >= 0 && r[i] < x.dim(0), "gather_rows: row {} outside [0, {})", r[i], x.dim(0));
      std::copy_n(px + int64_t(r[i]) * H, H, po + i * H);
    }
  }

  void apply_token_bitmask(Tensor logits, const Tensor& bitmask) override {
    check_token_bitmask(logits, bitmask);
    const int64_t R = logits.dim(0), V = logits.dim(1), W = bitmask.dim(1);
    float* x = cpu_f32(logits, "apply_token_bitmask");
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
    cpu_attend_levels(plan.step, s, cpu_f32(q, "attention q"), pages,
                      cpu_f32(out, "attention output"));
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
    const float* pq = cpu_f32(q, "attention q");
    if (plan->sel.per_head) {
      cpu_attend_head_sparse(plan->step, s, plan->sel, pq, pages, bounds,
                             cpu_f32(out, "attention output"));
      return;
    }
    const AttentionStep step = cpu_sparse_step(plan->step, s, plan->sel, pq, bounds);
    cpu_attend_levels(step, s, pq, pages, cpu_f32(out, "attention output"));
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
      float* p = cpu_f32(pages, "attention kv pages");
      cpu_append_kv(own, kv, cpu_f32(k, "attention k"), cpu_f32(v, "attention v"), p);
      return p;
    }
    pages.expect_dtype(DType::F8E4M3, "attention kv pages (an fp8 cache)");
    auto* p = static_cast<uint8_t*>(pages.data());
    cpu_append_kv_fp8(own, kv, cpu_f32(k, "attention k"), cpu_f32(v, "attention v"), p);
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

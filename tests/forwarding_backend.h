// A Backend that forwards the ops LlamaModel's dense forward pass uses to the CPU backend, for
// tests that replace one op with a reference of their own (the sparse attention, the whole
// decode layer) and keep everything else as the CPU backend computes it (MoE and MLA included).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace nc::testing {

class ForwardingBackend : public Backend {
 public:
  std::unique_ptr<Backend> in = make_cpu_backend();

  Device device() const override { return in->device(); }
  DType dtype() const override { return in->dtype(); }
  Tensor alloc(const Shape& s, DType t) override { return in->alloc(s, t); }
  Tensor upload(const HostTensor& t) override { return in->upload(t); }
  bool keeps_weight_dtype(DType t) const override { return in->keeps_weight_dtype(t); }
  bool supports_kv_dtype(DType t) const override { return in->supports_kv_dtype(t); }
  void copy_from_host(Tensor d, const void* s) override { in->copy_from_host(d, s); }
  std::vector<float> to_host_f32(const Tensor& t) override { return in->to_host_f32(t); }
  void embedding(const Tensor& a, const Tensor& b, Tensor o) override { in->embedding(a, b, o); }
  void rmsnorm(const Tensor& x, const Tensor& w, float e, Tensor o) override {
    in->rmsnorm(x, w, e, o);
  }
  void add_rmsnorm(Tensor x, Tensor r, const Tensor& w, float e) override {
    in->add_rmsnorm(x, r, w, e);
  }
  void linear(const Tensor& x, const Tensor& w, const Tensor& b, Tensor o) override {
    in->linear(x, w, b, o);
  }
  void qkv_split_norm_rope(const Tensor& qkv, const Tensor& qn, const Tensor& kn, float e,
                           const Tensor& p, const Tensor& cs, int d, Tensor q, Tensor k,
                           Tensor v) override {
    in->qkv_split_norm_rope(qkv, qn, kn, e, p, cs, d, q, k, v);
  }
  void silu_and_mul(const Tensor& g, Tensor o) override { in->silu_and_mul(g, o); }
  void copy_rows(const Tensor& s, Tensor d) override { in->copy_rows(s, d); }
  void add(Tensor x, const Tensor& y) override { in->add(x, y); }
  void gather_rows(const Tensor& x, const Tensor& r, Tensor o) override {
    in->gather_rows(x, r, o);
  }
  void scatter_ids(const Tensor& s, const Tensor& p, Tensor d) override {
    in->scatter_ids(s, p, d);
  }
  std::unique_ptr<AttentionPlan> plan_attention(const AttentionStep& st,
                                                const AttentionShape& sh) override {
    return in->plan_attention(st, sh);
  }
  void attention(const AttentionPlan& p, const Tensor& q, const Tensor& k, const Tensor& v,
                 Tensor pages, Tensor out) override {
    in->attention(p, q, k, v, pages, out);
  }
  void moe_route(const Tensor& logits, const Tensor& bias, const MoeRouting& r, Tensor ids,
                 Tensor weights) override {
    in->moe_route(logits, bias, r, ids, weights);
  }
  void moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const Tensor& gate_up,
                   const Tensor& down, Tensor out) override {
    in->moe_experts(x, ids, weights, gate_up, down, out);
  }
  void head_linear(const Tensor& x, const Tensor& w, Tensor out) override {
    in->head_linear(x, w, out);
  }
  void mla_rope_norm(const Tensor& q, const Tensor& kv_a, const Tensor& kv_norm, float eps,
                     const Tensor& positions, const Tensor& cos_sin, bool interleaved, int nope_dim,
                     Tensor q_mla, Tensor latent) override {
    in->mla_rope_norm(q, kv_a, kv_norm, eps, positions, cos_sin, interleaved, nope_dim, q_mla,
                      latent);
  }
  void mla_attention(const AttentionPlan& plan, const Tensor& q_mla, const Tensor& latent,
                     Tensor kv_pages, Tensor out) override {
    in->mla_attention(plan, q_mla, latent, kv_pages, out);
  }
  void mla_attention_values(const AttentionPlan& plan, const Tensor& q, Tensor q_mla,
                            const Tensor& latent, Tensor kv_pages, const Tensor& w_uk_t,
                            const Tensor& w_uv, Tensor o_lat, Tensor attn) override {
    in->mla_attention_values(plan, q, q_mla, latent, kv_pages, w_uk_t, w_uv, o_lat, attn);
  }
  void update_page_bounds(const Tensor& pages, const KVCacheShape& kv, const Tensor& slots,
                          Tensor bounds) override {
    in->update_page_bounds(pages, kv, slots, bounds);
  }
};

}  // namespace nc::testing

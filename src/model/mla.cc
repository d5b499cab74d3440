// The MLA attention block (contract: model/mla.h).
#include "model/mla.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/host_tensor.h"

namespace nc {

namespace {

// transformers builds q_a_layernorm and kv_a_layernorm with their default eps, not rms_norm_eps.
constexpr float kLatentNormEps = 1e-6f;

std::string attn_name(int64_t layer, const char* rest) {
  return fmt::format("model.layers.{}.self_attn.{}", layer, rest);
}

// kv_b_proj [H (Dn + Dv), Dl] -> W_UK^T [H, Dl, Dn] and W_UV [H, Dv, Dl].
void split_kv_b(const std::vector<float>& kv_b, int64_t H, int64_t Dn, int64_t Dv, int64_t Dl,
                std::vector<float>& wuk_t, std::vector<float>& wuv) {
  wuk_t.assign(size_t(H * Dl * Dn), 0.0f);
  wuv.assign(size_t(H * Dv * Dl), 0.0f);
  for (int64_t h = 0; h < H; ++h) {
    const float* rows = kv_b.data() + h * (Dn + Dv) * Dl;
    for (int64_t n = 0; n < Dn; ++n)
      for (int64_t l = 0; l < Dl; ++l) wuk_t[size_t((h * Dl + l) * Dn + n)] = rows[n * Dl + l];
    std::copy_n(rows + Dn * Dl, Dv * Dl, wuv.begin() + h * Dv * Dl);
  }
}

}  // namespace

void MlaWorkspace::ensure(Backend& be, const ModelConfig& cfg, int64_t tokens) {
  if (tokens <= capacity) return;
  const MlaConfig& m = cfg.mla;
  const int64_t H = cfg.num_heads, Dr = cfg.head_dim, D = m.kv_lora_rank + Dr;
  const DType dt = be.dtype();
  *this = MlaWorkspace{};
  const int64_t cap = tokens;
  if (m.q_lora_rank > 0) {
    q_a = be.alloc({cap, m.q_lora_rank}, dt);
    q_a_n = be.alloc({cap, m.q_lora_rank}, dt);
  }
  q = be.alloc({cap, H * (m.qk_nope_head_dim + Dr)}, dt);
  kv_a = be.alloc({cap, D}, dt);
  q_mla = be.alloc({cap, H * D}, dt);
  latent = be.alloc({cap, D}, dt);
  o_lat = be.alloc({cap, H * m.kv_lora_rank}, dt);
  attn = be.alloc({cap, H * m.v_head_dim}, dt);
  capacity = cap;
  for (const Tensor* t : {&q_a, &q_a_n, &q, &kv_a, &q_mla, &latent, &o_lat, &attn})
    if (t->defined()) bytes += int64_t(t->nbytes());
}

MlaLayer load_mla_layer(const ModelConfig& cfg, Backend& be, const MlaWeightFn& weight, int64_t i,
                        int64_t* bytes) {
  const MlaConfig& m = cfg.mla;
  const int64_t Hd = cfg.hidden_size, H = cfg.num_heads, Dr = cfg.head_dim;
  const int64_t Dn = m.qk_nope_head_dim, Dv = m.v_head_dim, Dl = m.kv_lora_rank;
  const bool bias = cfg.attention_bias;
  auto up = [&](const char* rest, const Shape& shape) {
    Tensor t = weight(attn_name(i, rest), shape);
    *bytes += int64_t(t.nbytes());
    return t;
  };
  MlaLayer L;
  if (m.q_lora_rank > 0) {
    L.q_a = up("q_a_proj.weight", {m.q_lora_rank, Hd});
    if (bias) L.q_a_bias = up("q_a_proj.bias", {m.q_lora_rank});
    L.q_a_norm = up("q_a_layernorm.weight", {m.q_lora_rank});
    L.q_b = up("q_b_proj.weight", {H * (Dn + Dr), m.q_lora_rank});
  } else {
    L.q_proj = up("q_proj.weight", {H * (Dn + Dr), Hd});
  }
  L.kv_a = up("kv_a_proj_with_mqa.weight", {Dl + Dr, Hd});
  if (bias) L.kv_a_bias = up("kv_a_proj_with_mqa.bias", {Dl + Dr});
  L.kv_a_norm = up("kv_a_layernorm.weight", {Dl});
  {
    const Tensor kv_b = weight(attn_name(i, "kv_b_proj.weight"), {H * (Dn + Dv), Dl});
    const DType dt = kv_b.dtype();
    NC_CHECK_AS(ErrorKind::Unsupported, dt == DType::F32 || dt == DType::F16 || dt == DType::BF16,
                "model: MLA needs kv_b_proj of layer {} as a float tensor, got {}", i,
                dtype_name(dt));
    std::vector<float> wuk_t, wuv;
    split_kv_b(be.to_host_f32(kv_b), H, Dn, Dv, Dl, wuk_t, wuv);
    L.w_uk_t = be.upload(HostTensor{{H, Dl, Dn}, std::move(wuk_t)});
    L.w_uv = be.upload(HostTensor{{H, Dv, Dl}, std::move(wuv)});
    *bytes += int64_t(L.w_uk_t.nbytes() + L.w_uv.nbytes());
  }
  L.o_proj = up("o_proj.weight", {Hd, H * Dv});
  if (bias) L.o_bias = up("o_proj.bias", {Hd});
  return L;
}

KVCacheShape mla_kv_shape(const ModelConfig& cfg, int num_pages, int page_size) {
  KVCacheShape kv{int(cfg.num_layers), num_pages, page_size, 1,
                  int(cfg.mla.kv_lora_rank + cfg.head_dim)};
  kv.latent = true;
  return kv;
}

Shape mla_page_tensor_shape(const KVCacheShape& kv) {
  return {kv.num_pages, kv.page_size, 1, kv.head_dim};
}

AttentionShape mla_attention_shape(const ModelConfig& cfg, const KVCacheShape& kv, float sm_scale) {
  AttentionShape s{int(cfg.num_heads), 1, kv.head_dim, sm_scale, kv};
  s.latent_dim = int(cfg.mla.kv_lora_rank);
  s.mla_nope_dim = int(cfg.mla.qk_nope_head_dim);
  s.mla_v_dim = int(cfg.mla.v_head_dim);
  return s;
}

void mla_block(Backend& be, const ModelConfig& cfg, const MlaLayer& L, MlaWorkspace& ws,
               const AttentionPlan& plan, Tensor kv_pages, const Tensor& positions,
               const Tensor& cos_sin, const Tensor& in, Tensor out, int64_t T) {
  const MlaConfig& m = cfg.mla;
  ws.ensure(be, cfg, T);
  Tensor q = ws.q.slice(0, T), kv_a = ws.kv_a.slice(0, T), q_mla = ws.q_mla.slice(0, T),
         latent = ws.latent.slice(0, T), o_lat = ws.o_lat.slice(0, T), attn = ws.attn.slice(0, T);
  if (m.q_lora_rank > 0) {
    Tensor qa = ws.q_a.slice(0, T), qa_n = ws.q_a_n.slice(0, T);
    be.linear(in, L.q_a, L.q_a_bias, qa);
    be.rmsnorm(qa, L.q_a_norm, kLatentNormEps, qa_n);
    be.linear(qa_n, L.q_b, Tensor(), q);
  } else {
    be.linear(in, L.q_proj, Tensor(), q);
  }
  be.linear(in, L.kv_a, L.kv_a_bias, kv_a);
  be.mla_rope_norm(q, kv_a, L.kv_a_norm, kLatentNormEps, positions, cos_sin, m.rope_interleave,
                   int(m.qk_nope_head_dim), q_mla, latent);
  be.mla_attention_values(plan, q, q_mla, latent, kv_pages, L.w_uk_t, L.w_uv, o_lat, attn);
  be.linear(attn, L.o_proj, L.o_bias, out);
}

}  // namespace nc

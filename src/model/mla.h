// The MLA attention block of a DeepSeek-V2/V3 layer (docs/models.md, "MLA"), on Backend ops:
//
//   q      = q_proj(x) or q_b_proj(rmsnorm(q_a_proj(x)))          [T, H, Dn + Dr]
//   kv_a   = kv_a_proj_with_mqa(x)                                 [T, Dl + Dr]
//   latent = [rmsnorm(c_kv) | rope(k_pe)]: the token's cache row, appended to the latent pages
//   q_mla  = [W_UK[h]^T q_nope[h] | rope(q_pe[h])] per head        [T, H, Dl + Dr]
//   o_lat  = mla_attention(q_mla, pages)                            [T, H, Dl] (latent space)
//   out    = o_proj(W_UV[h] o_lat[h] per head)
//
// W_UK and W_UV are kv_b_proj's per-head key and value rows, taken apart at load time ("weight
// absorption": the cache never holds expanded keys or values). W_UK^T q_nope, the attention and
// W_UV are one Backend op, mla_attention_values: the CUDA backend runs the absorbed form above;
// the CPU backend takes, per entry of the step's plan, that form or the expanded one (the
// entry's keys W_UK c_kv and values W_UV c_kv decompressed once, then attention at head sizes
// Dn + Dr and Dv), whichever costs less: decode rows stay absorbed, whole prompts and long
// prefill chunks go expanded (cpu_mla.h has the rule).
// Dl = kv_lora_rank, Dr = qk_rope_head_dim (ModelConfig::head_dim), Dn = qk_nope_head_dim,
// Dv = v_head_dim.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "backend/backend.h"
#include "model/model_config.h"

namespace nc {

struct MlaLayer {
  Tensor q_proj;                        // [H (Dn + Dr), hidden] when q_lora_rank is 0
  Tensor q_a, q_a_bias, q_a_norm, q_b;  // q_lora_rank > 0 (bias with attention_bias)
  Tensor kv_a, kv_a_bias, kv_a_norm;
  Tensor w_uk_t;  // [H, Dl, Dn]: q_nope -> latent
  Tensor w_uv;    // [H, Dv, Dl]: latent -> value
  Tensor o_proj, o_bias;
};

// The block's activations for up to `capacity` tokens.
struct MlaWorkspace {
  int64_t capacity = 0;
  int64_t bytes = 0;
  Tensor q_a, q_a_n, q, kv_a, q_mla, latent, o_lat, attn;
  void ensure(Backend& backend, const ModelConfig& cfg, int64_t tokens);
};

// Gives a weight of the given Hugging Face name and shape on the device.
using MlaWeightFn = std::function<Tensor(const std::string& name, const Shape& shape)>;

// Layer `layer`'s MLA weights. kv_b_proj ([H (Dn + Dv), Dl]) is read back to the host and split
// into w_uk_t and w_uv; *bytes grows by what stays on the device.
MlaLayer load_mla_layer(const ModelConfig& cfg, Backend& backend, const MlaWeightFn& weight,
                        int64_t layer, int64_t* bytes);

// The latent page tensor of one layer, [num_pages, page_size, 1, Dl + Dr], and its shape.
KVCacheShape mla_kv_shape(const ModelConfig& cfg, int num_pages, int page_size);
Shape mla_page_tensor_shape(const KVCacheShape& kv);

// The attention shape of an MLA layer over kv (latent pages).
AttentionShape mla_attention_shape(const ModelConfig& cfg, const KVCacheShape& kv, float sm_scale);

// The block over rows [0, T): out = attention output (after o_proj) of in. in and out [T, hidden]
// may be the same tensor. positions: i32 [T]; cos_sin: the layer kind's table [max_pos, Dr].
void mla_block(Backend& backend, const ModelConfig& cfg, const MlaLayer& L, MlaWorkspace& ws,
               const AttentionPlan& plan, Tensor kv_pages, const Tensor& positions,
               const Tensor& cos_sin, const Tensor& in, Tensor out, int64_t T);

}  // namespace nc

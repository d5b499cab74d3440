// DeepSeek checkpoints' tensors (contract: model/deepseek.h).
#include "model/deepseek.h"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "core/error.h"
#include "core/tensor.h"
#include "formats/gguf.h"
#include "model/moe_weights.h"

namespace nc {

namespace {

void append_mla_specs(const ModelConfig& c, const std::string& prefix, std::vector<WeightSpec>& w) {
  const MlaConfig& m = c.mla;
  const int64_t h = c.hidden_size, H = c.num_heads, Dr = c.head_dim;
  const int64_t q = H * (m.qk_nope_head_dim + Dr);
  const std::string a = prefix + "self_attn.";
  if (m.q_lora_rank > 0) {
    w.push_back({a + "q_a_proj.weight", {m.q_lora_rank, h}});
    if (c.attention_bias) w.push_back({a + "q_a_proj.bias", {m.q_lora_rank}});
    w.push_back({a + "q_a_layernorm.weight", {m.q_lora_rank}});
    w.push_back({a + "q_b_proj.weight", {q, m.q_lora_rank}});
  } else {
    w.push_back({a + "q_proj.weight", {q, h}});
  }
  w.push_back({a + "kv_a_proj_with_mqa.weight", {m.kv_lora_rank + Dr, h}});
  if (c.attention_bias) w.push_back({a + "kv_a_proj_with_mqa.bias", {m.kv_lora_rank + Dr}});
  w.push_back({a + "kv_a_layernorm.weight", {m.kv_lora_rank}});
  w.push_back({a + "kv_b_proj.weight", {H * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank}});
  w.push_back({a + "o_proj.weight", {h, H * m.v_head_dim}});
  if (c.attention_bias) w.push_back({a + "o_proj.bias", {h}});
}

}  // namespace

void append_deepseek_layer_specs(const ModelConfig& c, int64_t layer, std::vector<WeightSpec>& w) {
  const int64_t h = c.hidden_size, I = c.intermediate_size;
  const std::string prefix = fmt::format("model.layers.{}.", layer);
  w.push_back({prefix + "input_layernorm.weight", {h}});
  append_mla_specs(c, prefix, w);
  w.push_back({prefix + "post_attention_layernorm.weight", {h}});
  if (c.moe.is_sparse(layer)) {
    append_moe_weight_specs(c, layer, w);
    return;
  }
  w.push_back({prefix + "mlp.gate_proj.weight", {I, h}});
  w.push_back({prefix + "mlp.up_proj.weight", {I, h}});
  w.push_back({prefix + "mlp.down_proj.weight", {h, I}});
}

void merge_gguf_kv_b(const ModelConfig& c, WeightMap& w) {
  const MlaConfig& m = c.mla;
  const int64_t H = c.num_heads, Dn = m.qk_nope_head_dim, Dv = m.v_head_dim, Dl = m.kv_lora_rank;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string a = fmt::format("model.layers.{}.self_attn.", l);
    auto kb = w.find(a + "k_b_proj.weight"), vb = w.find(a + "v_b_proj.weight");
    if (kb == w.end() && vb == w.end()) continue;  // kv_b_proj stored whole
    NC_CHECK_AS(ErrorKind::InvalidArgument, kb != w.end() && vb != w.end(),
                "model: layer {} has only one of attn_k_b / attn_v_b", l);
    const HostTensor k = kb->second.is_raw() ? dequantized(kb->second) : kb->second;
    const HostTensor v = vb->second.is_raw() ? dequantized(vb->second) : vb->second;
    NC_CHECK_AS(ErrorKind::InvalidArgument, k.shape == Shape({H, Dl, Dn}),
                "model: tensor {}k_b_proj.weight has shape {}, expected [{}, {}, {}]", a,
                shape_str(k.shape), H, Dl, Dn);
    NC_CHECK_AS(ErrorKind::InvalidArgument, v.shape == Shape({H, Dv, Dl}),
                "model: tensor {}v_b_proj.weight has shape {}, expected [{}, {}, {}]", a,
                shape_str(v.shape), H, Dv, Dl);
    HostTensor kv{{H * (Dn + Dv), Dl}, std::vector<float>(size_t(H * (Dn + Dv) * Dl))};
    for (int64_t h = 0; h < H; ++h) {
      float* rows = kv.data.data() + h * (Dn + Dv) * Dl;
      for (int64_t n = 0; n < Dn; ++n)
        for (int64_t d = 0; d < Dl; ++d) rows[n * Dl + d] = k.data[size_t((h * Dl + d) * Dn + n)];
      std::copy_n(v.data.begin() + h * Dv * Dl, Dv * Dl, rows + Dn * Dl);
    }
    w.erase(kb);
    w.erase(vb);
    w[a + "kv_b_proj.weight"] = std::move(kv);
  }
}

int drop_mtp_layers(const ModelConfig& c, WeightMap& w) {
  int dropped = 0;
  for (auto it = w.begin(); it != w.end();) {
    int64_t layer = -1;
    if (std::sscanf(it->first.c_str(), "model.layers.%ld.", &layer) == 1 && layer >= c.num_layers) {
      it = w.erase(it);
      ++dropped;
    } else {
      ++it;
    }
  }
  if (dropped > 0)
    fmt::print(stderr,
               "model: skipping {} tensors of the multi-token-prediction layers (index >= {}); "
               "they are not run\n",
               dropped, c.num_layers);
  return dropped;
}

}  // namespace nc

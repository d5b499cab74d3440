// ModelConfig of a GGUF file of llama.cpp architecture "deepseek2" (DeepSeek-V2, V2-Lite and the
// V3 architecture: llama.cpp files them all under one name). llama.cpp's converter stores the
// MLA shapes as key_length = kv_lora_rank + rope dim, value_length = kv_lora_rank (the absorbed
// MQA view) and key_length_mla / value_length_mla (the per-head q/k and v widths); the rope is
// DeepSeek's interleaved one; YaRN's mscale_all_dim as rope.scaling.yarn_log_multiplier (0.1 x
// it). The file keeps no separate mscale, so cos/sin are not scaled (mscale = mscale_all_dim, as
// DeepSeek's own checkpoints have it). Entry point: config_from_gguf (model/config_gguf.cc).
#include <cmath>

#include "core/error.h"
#include "formats/gguf.h"
#include "model/model_config.h"
#include "model/moe_config.h"

namespace nc {

namespace {

RopeScaling deepseek2_rope(const GgufFile& f, const std::string& p) {
  RopeScaling rs;
  const std::string type = f.get_string(p + "rope.scaling.type", "none");
  if (type == "none") return rs;
  NC_CHECK_AS(ErrorKind::Unsupported, type == "yarn",
              "GGUF: {}rope.scaling.type '{}' is not supported for deepseek2 (none, yarn)", p,
              type);
  rs.type = "yarn";
  rs.factor = f.get_float(p + "rope.scaling.factor");
  rs.original_max_position = f.get_int(p + "rope.scaling.original_context_length");
  rs.mscale_all_dim = rs.mscale = f.get_float(p + "rope.scaling.yarn_log_multiplier", 0.0) / 0.1;
  return rs;
}

}  // namespace

ModelConfig config_from_gguf_deepseek2(const GgufFile& f) {
  const std::string p = "deepseek2.";
  ModelConfig c;
  c.num_layers = checked_layer_count(f.get_int(p + "block_count"), "block_count");
  c.architecture = "deepseek_v2";
  c.hidden_size = f.get_int(p + "embedding_length");
  c.num_heads = f.get_int(p + "attention.head_count");
  c.num_kv_heads = 1;
  MlaConfig& m = c.mla;
  m.kv_lora_rank = f.get_int(p + "attention.kv_lora_rank");
  m.q_lora_rank = f.get_int(p + "attention.q_lora_rank", 0);
  c.head_dim = f.get_int(p + "rope.dimension_count");
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              f.has(p + "attention.key_length_mla") && f.has(p + "attention.value_length_mla"),
              "GGUF: deepseek2 needs {}attention.key_length_mla and value_length_mla (a file "
              "from an older converter, without MLA keys, is not supported)",
              p);
  m.qk_nope_head_dim = f.get_int(p + "attention.key_length_mla") - c.head_dim;
  m.v_head_dim = f.get_int(p + "attention.value_length_mla");
  m.rope_interleave = true;
  c.intermediate_size = f.get_int(p + "feed_forward_length");
  const GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  c.vocab_size = embd && embd->ne.size() == 2 ? embd->ne[1] : f.get_int(p + "vocab_size");
  c.max_position = f.get_int(p + "context_length");
  c.rope_theta = f.get_float(p + "rope.freq_base", 10000.0);
  c.rms_eps = f.get_float(p + "attention.layer_norm_rms_epsilon");
  c.rope_scaling = deepseek2_rope(f, p);
  c.tie_embeddings = f.find_tensor("output.weight") == nullptr;
  c.attention_bias = c.o_proj_bias = f.find_tensor("blk.0.attn_output.bias") != nullptr;
  double scale = 1.0 / std::sqrt(double(m.qk_nope_head_dim + c.head_dim));
  if (c.rope_scaling.type == "yarn" && c.rope_scaling.factor > 1) {
    const double ms = 0.1 * c.rope_scaling.mscale_all_dim * std::log(c.rope_scaling.factor) + 1.0;
    scale *= ms * ms;
  }
  c.attn_scale = scale;
  read_moe_gguf(f, "deepseek2", c);  // model/moe_config.h: sparse layers by their router
  c.validate();
  return c;
}

}  // namespace nc

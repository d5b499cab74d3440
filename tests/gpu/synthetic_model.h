// A small synthetic model for the GPU tests: 2 layers, hidden 256, 4 heads of 64 (2 KV heads),
// vocabulary 1000, in the Hugging Face layout of `arch` ("llama": tied embeddings; "qwen2":
// q/k/v biases; "qwen3": q/k norms), with random bf16-exact weights drawn from `rng` in a fixed
// order (so the same seed gives the same model on every backend and in every test).
#pragma once
#include <random>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "model/llama.h"

namespace nc::testing {

inline ModelConfig synthetic_config(const std::string& arch) {
  ModelConfig c;
  c.architecture = arch;
  c.num_layers = 2;
  c.hidden_size = 256;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.intermediate_size = 512;
  c.vocab_size = 1000;
  c.max_position = 2048;
  c.rms_eps = 1e-6;
  c.tie_embeddings = arch == "llama";
  c.qk_norm = arch == "qwen3";
  c.attention_bias = arch == "qwen2";
  return c;
}

inline WeightMap synthetic_weights(const ModelConfig& c, std::mt19937& rng) {
  WeightMap w;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale,
                 float offset = 0) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v = random_vec(rng, size_t(n), scale);
    for (float& x : v) x = round_bf16(x + offset);
    w[name] = HostTensor{shape, v};
  };
  const int64_t H = c.hidden_size, D = c.head_dim, I = c.intermediate_size;
  add("model.embed_tokens.weight", {c.vocab_size, H}, 1.0f);
  add("model.norm.weight", {H}, 0.1f, 1.0f);
  if (!c.tie_embeddings) add("lm_head.weight", {c.vocab_size, H}, 0.06f);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H}, 0.1f, 1.0f);
    add(p + "post_attention_layernorm.weight", {H}, 0.1f, 1.0f);
    add(p + "self_attn.q_proj.weight", {c.num_heads * D, H}, 0.06f);
    add(p + "self_attn.k_proj.weight", {c.num_kv_heads * D, H}, 0.06f);
    add(p + "self_attn.v_proj.weight", {c.num_kv_heads * D, H}, 0.06f);
    add(p + "self_attn.o_proj.weight", {H, c.num_heads * D}, 0.06f);
    if (c.attention_bias) {
      add(p + "self_attn.q_proj.bias", {c.num_heads * D}, 0.1f);
      add(p + "self_attn.k_proj.bias", {c.num_kv_heads * D}, 0.1f);
      add(p + "self_attn.v_proj.bias", {c.num_kv_heads * D}, 0.1f);
    }
    if (c.qk_norm) {
      add(p + "self_attn.q_norm.weight", {D}, 0.1f, 1.0f);
      add(p + "self_attn.k_norm.weight", {D}, 0.1f, 1.0f);
    }
    add(p + "mlp.gate_proj.weight", {I, H}, 0.06f);
    add(p + "mlp.up_proj.weight", {I, H}, 0.06f);
    add(p + "mlp.down_proj.weight", {H, I}, 0.04f);
  }
  return w;
}

}  // namespace nc::testing

// ModelConfig: the hyper-parameters of the decoder (model/llama.h) for the families it serves:
// Llama (SmolLM2), Qwen2, Qwen3, Mistral, Phi-3, Gemma 2 and Gemma 3 (text), filled from a
// Hugging Face config.json (model/config_hf.cc) or from GGUF metadata (model/config_gguf.cc).
// Everything a family adds to Llama is a field here with its Llama value as the default, so a
// Llama config reads as before. A config the decoder cannot serve is an nc::Error naming the
// field and its value (docs/models.md).
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/moe_config.h"

namespace nc {

class GgufFile;

// Rope scaling: Llama-3 style ("rope_type": "llama3"), linear (positions divided by factor) or
// Phi-3's "longrope" (per-frequency divisors, long_factor when the served context, max_position,
// exceeds original_max_position, else short_factor; cos/sin multiplied by attention_factor);
// type "none" when absent. YaRN ("yarn", DeepSeek): frequencies blended between interpolated
// (divided by factor) and extrapolated ones by a ramp between the correction dimensions of
// beta_fast and beta_slow rotations over original_max_position; cos/sin multiplied by
// attention_factor (0 = mscale(factor, mscale) / mscale(factor, mscale_all_dim), or
// mscale(factor) without both).
struct RopeScaling {
  std::string type = "none";  // "none" | "llama3" | "linear" | "longrope" | "yarn"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
  std::vector<double> long_factor, short_factor;  // longrope: head_dim / 2 values each
  double attention_factor = 0;  // longrope: 0 = sqrt(1 + ln(s) / ln(original)), s = max / original
  double beta_fast = 32, beta_slow = 1, mscale = 0, mscale_all_dim = 0;  // yarn
  bool truncate = true;  // yarn: correction range rounded outwards to whole dimensions
};

// DeepSeek's multi-head latent attention (model/mla.h); kv_lora_rank 0: none. With MLA, the
// config's head_dim is qk_rope_head_dim (the rope tables' width, as transformers sets it),
// num_kv_heads is 1 (the one latent "head" per token) and attn_scale the softmax scale
// (qk_nope_head_dim + qk_rope_head_dim)^-1/2, times YaRN's mscale(factor, mscale_all_dim)^2.
struct MlaConfig {
  int64_t kv_lora_rank = 0;
  int64_t q_lora_rank = 0;  // 0: a plain q_proj (DeepSeek-V2-Lite)
  int64_t qk_nope_head_dim = 0;
  int64_t v_head_dim = 0;
  bool rope_interleave = true;  // rope over pairs (x[2i], x[2i+1]) (DeepSeek), else rotate-half
  bool enabled() const { return kv_lora_rank > 0; }
};

// The MLP's gate activation.
enum class Activation { Silu, GeluTanh };

struct ModelConfig {
  // "llama" | "qwen2" | "qwen3" | "qwen3_moe" | "mistral" | "phi3" | "gemma2" | "gemma3" (SmolLM2
  // is "llama"; "gemma3" is the text model, Hugging Face's gemma3_text; "deepseek_v2" |
  // "deepseek_v3": MLA)
  std::string architecture;
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  // Tensor parallelism (model/tensor_parallel.h): this rank holds rows [vocab_first,
  // vocab_first + vocab_count) of the embeddings and the LM head (0 rows: all of them).
  int64_t vocab_first = 0, vocab_count = 0;
  int64_t max_position = 0;
  // Positions this instance serves (the engine's max_model_len; 0: max_position): the rope
  // tables and position checks cover [0, served_positions()). max_position stays the
  // checkpoint's, which rope scaling reads (longrope's factor, YaRN's mscale).
  int64_t max_served_position = 0;
  int64_t served_positions() const {
    return max_served_position > 0 ? std::min(max_served_position, max_position) : max_position;
  }
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double rms_eps = 1e-6;
  bool tie_embeddings = false;
  bool qk_norm = false;         // Qwen3: RMSNorm over head_dim on q and k before rope
  bool attention_bias = false;  // bias on q/k/v projections (Qwen2 always; Llama/Qwen3 when set)
  bool o_proj_bias = false;     // bias on o_proj too (Llama/Qwen3 "attention_bias"; never Qwen2)

  // Sliding-window attention: Hugging Face's sliding_window W (a row at p sees keys p - W + 1 ..
  // p; AttentionShape::window_left = W - 1); 0 = none. Which layers use it: layer_sliding, one
  // flag per layer (empty = every layer when sliding_window > 0, as Mistral and Phi-3).
  int64_t sliding_window = 0;
  std::vector<bool> layer_sliding;
  // Gemma 3: the sliding layers' own rope (base, no scaling); 0 = the same rope as every layer.
  double sliding_rope_theta = 0;

  Activation activation = Activation::Silu;
  double attn_scale = 0;      // q.k scale; 0 = 1/sqrt(head_dim) (Gemma: query_pre_attn_scalar^-1/2)
  double attn_soft_cap = 0;   // Gemma 2: attention scores cap * tanh(s / cap); 0 = off
  double final_soft_cap = 0;  // Gemma 2: the same on the logits; 0 = off
  bool scale_embeddings = false;  // Gemma: embeddings times sqrt(hidden_size)
  // Gemma: post-attention norm on the attention output, pre- and post-feed-forward norms.
  bool sandwich_norms = false;
  // Gemma's checkpoints store RMSNorm weights w applied as (1 + w): the Hugging Face loader adds
  // the 1 (GGUF files from llama.cpp's converter already hold 1 + w).
  bool norm_weight_offset = false;
  MlaConfig mla;  // DeepSeek-V2/V3
  // Linear layers' weights: "none" (as stored, or the backend's dtype) or "fp8" (e4m3 with one
  // scale per output row and per-token activation scales, backend/fp8_weight.h; quantised at
  // load, or taken as an FP8 checkpoint stores them). An FP8 checkpoint's quantization_config
  // sets "fp8"; EngineConfig::quantization may ask for either (model/fp8_load.h).
  std::string quantization = "none";

  // Mixture of experts (Qwen3-MoE "qwen3_moe"; model/moe_config.h): empty for dense families.
  MoeConfig moe;

  // Whether layer l uses the sliding window.
  bool is_sliding(int64_t layer) const {
    if (sliding_window <= 0) return false;
    return layer_sliding.empty() || layer_sliding[size_t(layer)];
  }

  // Throws nc::Error naming the bad field (zero or negative sizes, heads not dividing, ...).
  void validate() const;

 private:
  void validate_variants() const;
  void validate_mla() const;
};

// A checkpoint's layer count, checked where it is read (before it sizes per-layer vectors):
// 1..2^24 as validate() allows; the error names `field` and the value.
int64_t checked_layer_count(int64_t n, const char* field);

// Both throw nc::Error naming the missing or malformed key, or the unsupported architecture.
// Both return a validated config.
ModelConfig config_from_hf_json(const nlohmann::json& j);
ModelConfig config_from_gguf(const GgufFile& f);
// llama.cpp's "deepseek2" files (model/config_gguf_deepseek.cc); config_from_gguf calls it.
ModelConfig config_from_gguf_deepseek2(const GgufFile& f);

}  // namespace nc

// ModelConfig: the hyper-parameters of a Llama-family decoder (Llama, SmolLM2, Qwen2, Qwen3),
// filled from a Hugging Face config.json or from GGUF metadata.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace nc {

class GgufFile;

// Rope scaling: Llama-3 style ("rope_type": "llama3") or linear (positions divided by factor);
// type "none" when absent.
struct RopeScaling {
  std::string type = "none";  // "none" | "llama3" | "linear"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

struct ModelConfig {
  std::string architecture;  // "llama" | "qwen2" | "qwen3" (SmolLM2 is "llama")
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position = 0;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double rms_eps = 1e-6;
  bool tie_embeddings = false;
  bool qk_norm = false;         // Qwen3: RMSNorm over head_dim on q and k before rope
  bool attention_bias = false;  // bias on q/k/v projections (Qwen2 always; Llama/Qwen3 when set)
  bool o_proj_bias = false;     // bias on o_proj too (Llama/Qwen3 "attention_bias"; never Qwen2)

  // Throws nc::Error naming the bad field (zero or negative sizes, heads not dividing, ...).
  void validate() const;
};

// Both throw nc::Error naming the missing or malformed key, or the unsupported architecture.
// Both return a validated config.
ModelConfig config_from_hf_json(const nlohmann::json& j);
ModelConfig config_from_gguf(const GgufFile& f);

}  // namespace nc

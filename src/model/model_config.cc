// ModelConfig::validate (model/model_config.h); the readers are model/config_hf.cc and
// model/config_gguf.cc.
#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>

#include "core/error.h"

namespace nc {

// Generous upper bounds (far beyond any real model) for every size of a config.
constexpr int64_t kMaxConfigSize = int64_t(1) << 24;

int64_t checked_layer_count(int64_t n, const char* field) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, n > 0 && n <= kMaxConfigSize,
              "model config: {} = {} (expected 1..{})", field, n, kMaxConfigSize);
  return n;
}

void ModelConfig::validate() const {
  static const char* kArchs[] = {"llama",  "qwen2",  "qwen3",     "mistral",     "phi3",
                                 "gemma2", "gemma3", "qwen3_moe", "deepseek_v2", "deepseek_v3"};
  NC_CHECK_AS(ErrorKind::Unsupported,
              std::any_of(std::begin(kArchs), std::end(kArchs),
                          [&](const char* a) { return architecture == a; }),
              "unsupported architecture '{}' (supported: llama, qwen2, qwen3, mistral, phi3, "
              "gemma2, gemma3, qwen3_moe, deepseek_v2, deepseek_v3)",
              architecture);
  const std::pair<const char*, int64_t> sizes[] = {
      {"num_layers", num_layers}, {"hidden_size", hidden_size},
      {"num_heads", num_heads},   {"num_kv_heads", num_kv_heads},
      {"head_dim", head_dim},     {"intermediate_size", intermediate_size},
      {"vocab_size", vocab_size}, {"max_position", max_position}};
  // The bounds keep products such as vocab * hidden or heads * head_dim well inside int64 for
  // every consumer of the config.
  constexpr int64_t kMaxSize = kMaxConfigSize;
  for (const auto& [name, v] : sizes) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, v > 0, "model config: {} must be positive, got {}",
                name, v);
    NC_CHECK_AS(ErrorKind::InvalidArgument, v <= kMaxSize,
                "model config: {} = {} is implausibly large (limit {})", name, v, kMaxSize);
  }
  NC_CHECK_AS(ErrorKind::InvalidArgument, max_position > 0 && max_position <= (int64_t(1) << 40),
              "model config: max_position must be positive and plausible, got {}", max_position);
  NC_CHECK_AS(ErrorKind::InvalidArgument, num_heads % num_kv_heads == 0,
              "model config: num_heads {} is not a multiple of num_kv_heads {}", num_heads,
              num_kv_heads);
  NC_CHECK_AS(ErrorKind::InvalidArgument, head_dim % 2 == 0,
              "model config: head_dim {} must be even for rope", head_dim);
  NC_CHECK_AS(ErrorKind::InvalidArgument, rms_eps > 0 && std::isfinite(rms_eps),
              "model config: rms_eps must be positive, got {}", rms_eps);
  NC_CHECK_AS(ErrorKind::InvalidArgument, rope_theta > 0 && std::isfinite(rope_theta),
              "model config: rope_theta must be positive, got {}", rope_theta);
  const RopeScaling& rs = rope_scaling;
  NC_CHECK_AS(ErrorKind::Unsupported,
              rs.type == "none" || rs.type == "linear" || rs.type == "llama3" ||
                  rs.type == "longrope" || rs.type == "yarn",
              "model config: unsupported rope scaling type '{}'", rs.type);
  if (rs.type != "none") {
    NC_CHECK_AS(ErrorKind::InvalidArgument, rs.factor > 0 && std::isfinite(rs.factor),
                "model config: rope scaling factor must be positive, got {}", rs.factor);
  }
  if (rs.type == "llama3") {
    NC_CHECK_AS(ErrorKind::InvalidArgument, rs.low_freq_factor < rs.high_freq_factor,
                "model config: llama3 rope scaling needs low_freq_factor {} < high_freq_factor {}",
                rs.low_freq_factor, rs.high_freq_factor);
    NC_CHECK_AS(ErrorKind::InvalidArgument, rs.original_max_position > 0,
                "model config: llama3 rope scaling needs a positive original_max_position");
  }
  if (rs.type == "longrope") {
    const size_t half = size_t(head_dim / 2);
    NC_CHECK_AS(
        ErrorKind::InvalidArgument, rs.long_factor.size() == half && rs.short_factor.size() == half,
        "model config: longrope needs head_dim / 2 = {} long and short factors, got {} and {}",
        half, rs.long_factor.size(), rs.short_factor.size());
    for (const auto* list : {&rs.long_factor, &rs.short_factor})
      for (double x : *list)
        NC_CHECK_AS(ErrorKind::InvalidArgument, x > 0 && std::isfinite(x),
                    "model config: longrope factor {} must be positive", x);
    NC_CHECK_AS(ErrorKind::InvalidArgument, rs.original_max_position > 0,
                "model config: longrope needs a positive original_max_position_embeddings");
  }
  if (rs.type == "yarn")
    NC_CHECK_AS(ErrorKind::InvalidArgument,
                rs.original_max_position > 0 && rs.beta_fast > 0 && rs.beta_slow > 0,
                "model config: yarn rope scaling needs positive original_max_position_embeddings, "
                "beta_fast and beta_slow (got {}, {}, {})",
                rs.original_max_position, rs.beta_fast, rs.beta_slow);
  validate_variants();
  moe.validate(num_layers);
  if (mla.enabled()) validate_mla();
  NC_CHECK_AS(ErrorKind::InvalidArgument, quantization == "none" || quantization == "fp8",
              "model config: quantization '{}' is not one of none, fp8", quantization);
}

void ModelConfig::validate_mla() const {
  const std::pair<const char*, int64_t> sizes[] = {{"kv_lora_rank", mla.kv_lora_rank},
                                                   {"qk_nope_head_dim", mla.qk_nope_head_dim},
                                                   {"v_head_dim", mla.v_head_dim}};
  for (const auto& [name, v] : sizes)
    NC_CHECK_AS(ErrorKind::InvalidArgument, v > 0 && v <= (int64_t(1) << 16),
                "model config: MLA {} must lie in 1..65536, got {}", name, v);
  NC_CHECK_AS(
      ErrorKind::InvalidArgument, mla.q_lora_rank >= 0 && mla.q_lora_rank <= (int64_t(1) << 16),
      "model config: MLA q_lora_rank must lie in 0..65536 (0: none), got {}", mla.q_lora_rank);
  NC_CHECK_AS(ErrorKind::InvalidArgument, num_kv_heads == 1,
              "model config: MLA caches one latent head, num_kv_heads is {}", num_kv_heads);
}

void ModelConfig::validate_variants() const {
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              sliding_window >= 0 && sliding_window <= (int64_t(1) << 30),
              "model config: sliding_window must be >= 0, got {}", sliding_window);
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              layer_sliding.empty() || int64_t(layer_sliding.size()) == num_layers,
              "model config: layer_types has {} entries for {} layers", layer_sliding.size(),
              num_layers);
  const std::pair<const char*, double> reals[] = {{"sliding_rope_theta", sliding_rope_theta},
                                                  {"attn_scale", attn_scale},
                                                  {"attn_logit_softcapping", attn_soft_cap},
                                                  {"final_logit_softcapping", final_soft_cap}};
  for (const auto& [name, x] : reals)
    NC_CHECK_AS(ErrorKind::InvalidArgument, x >= 0 && std::isfinite(x),
                "model config: {} must be >= 0, got {}", name, x);
}

}  // namespace nc

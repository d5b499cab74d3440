// ModelConfig from a Hugging Face config.json (model/model_config.h): Llama, Qwen2, Qwen3,
// Mistral, Phi-3, Gemma 2 and Gemma 3 text, in transformers 4's spelling ("rope_theta",
// "rope_scaling") and 5's ("rope_parameters", per layer type for Gemma 3).
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "model/model_config.h"

namespace nc {
namespace {

using json = nlohmann::json;

using json = nlohmann::json;

// The key's value, or nullptr when absent or null (transformers writes null for "use default").
const json* find_key(const json& j, const char* key) {
  auto it = j.find(key);
  return (it == j.end() || it->is_null()) ? nullptr : &*it;
}

std::optional<int64_t> opt_int(const json& j, const char* key) {
  const json* v = find_key(j, key);
  if (!v) return std::nullopt;
  NC_CHECK_AS(ErrorKind::InvalidArgument, v->is_number_integer(),
              "config.json: '{}' must be an integer, got {}", key, v->dump());
  if (v->is_number_unsigned()) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, v->get<uint64_t>() <= uint64_t(INT64_MAX),
                "config.json: '{}' is too large", key);
  }
  return v->get<int64_t>();
}

int64_t req_int(const json& j, const char* key) {
  auto v = opt_int(j, key);
  NC_CHECK_AS(ErrorKind::InvalidArgument, v.has_value(), "config.json: missing '{}'", key);
  return *v;
}

std::optional<double> opt_float(const json& j, const char* key) {
  const json* v = find_key(j, key);
  if (!v) return std::nullopt;
  NC_CHECK_AS(ErrorKind::InvalidArgument, v->is_number(),
              "config.json: '{}' must be a number, got {}", key, v->dump());
  return v->get<double>();
}

double req_float(const json& j, const char* key, const char* where) {
  auto v = opt_float(j, key);
  NC_CHECK_AS(ErrorKind::InvalidArgument, v.has_value(), "config.json: {} needs '{}'", where, key);
  return *v;
}

std::optional<bool> opt_bool(const json& j, const char* key) {
  const json* v = find_key(j, key);
  if (!v) return std::nullopt;
  NC_CHECK_AS(ErrorKind::InvalidArgument, v->is_boolean(),
              "config.json: '{}' must be true or false, got {}", key, v->dump());
  return v->get<bool>();
}

std::optional<std::string> opt_string(const json& j, const char* key) {
  const json* v = find_key(j, key);
  if (!v) return std::nullopt;
  NC_CHECK_AS(ErrorKind::InvalidArgument, v->is_string(),
              "config.json: '{}' must be a string, got {}", key, v->dump());
  return v->get<std::string>();
}

std::optional<std::string> arch_of_class(const std::string& cls) {
  static const std::pair<const char*, const char*> kClasses[] = {
      {"LlamaForCausalLM", "llama"},
      {"Qwen2ForCausalLM", "qwen2"},
      {"Qwen3ForCausalLM", "qwen3"},
      {"MistralForCausalLM", "mistral"},
      {"Phi3ForCausalLM", "phi3"},
      {"Gemma2ForCausalLM", "gemma2"},
      {"Gemma3ForCausalLM", "gemma3"},
      {"Qwen3MoeForCausalLM", "qwen3_moe"},
      {"DeepseekV2ForCausalLM", "deepseek_v2"},
      {"DeepseekV3ForCausalLM", "deepseek_v3"}};
  for (const auto& [c, a] : kClasses)
    if (cls == c) return a;
  return std::nullopt;
}

std::optional<std::string> arch_of_model_type(const std::string& t) {
  if (t == "llama" || t == "qwen2" || t == "qwen3" || t == "mistral" || t == "phi3" ||
      t == "gemma2" || t == "qwen3_moe")
    return t;
  if (t == "gemma3_text") return "gemma3";
  if (t == "deepseek_v2" || t == "deepseek_v3") return t;
  return std::nullopt;
}

// "architectures" first (the class transformers instantiates), then "model_type".
std::string hf_architecture(const json& j) {
  std::string seen;
  if (const json* a = find_key(j, "architectures")) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, a->is_array(),
                "config.json: 'architectures' must be a list");
    for (const json& c : *a) {
      NC_CHECK_AS(ErrorKind::InvalidArgument, c.is_string(),
                  "config.json: 'architectures' entries must be strings");
      if (auto arch = arch_of_class(c.get<std::string>())) return *arch;
      seen += (seen.empty() ? "" : ", ") + c.get<std::string>();
    }
  }
  if (auto mt = opt_string(j, "model_type")) {
    if (auto arch = arch_of_model_type(*mt)) return *arch;
    seen += (seen.empty() ? "model_type " : ", model_type ") + *mt;
  }
  NC_CHECK_AS(ErrorKind::InvalidArgument, !seen.empty(),
              "config.json: neither 'architectures' nor 'model_type' is set");
  fail_as(ErrorKind::Unsupported,
          "unsupported architecture '{}' (supported: LlamaForCausalLM, Qwen2ForCausalLM, "
          "Qwen3ForCausalLM, MistralForCausalLM, Phi3ForCausalLM, Gemma2ForCausalLM, "
          "Gemma3ForCausalLM, Qwen3MoeForCausalLM, DeepseekV2ForCausalLM, DeepseekV3ForCausalLM)",
          seen);
}

std::vector<double> req_floats(const json& j, const char* key, const char* where) {
  const json* v = find_key(j, key);
  NC_CHECK_AS(ErrorKind::InvalidArgument, v && v->is_array(), "config.json: {} needs a list '{}'",
              where, key);
  std::vector<double> out;
  for (const json& x : *v) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, x.is_number(),
                "config.json: '{}' entries must be numbers, got {}", key, x.dump());
    out.push_back(x.get<double>());
  }
  return out;
}

// YaRN (DeepSeek): factor (else max_position / original, as transformers), the correction
// betas, the two mscales and the attention factor.
RopeScaling parse_yarn(const json& rs, const json& top) {
  RopeScaling out;
  out.type = "yarn";
  auto orig = opt_int(rs, "original_max_position_embeddings");
  if (!orig) orig = opt_int(top, "original_max_position_embeddings");
  // Neither given: transformers takes max_position_embeddings (then factor must be given).
  if (!orig) orig = opt_int(top, "max_position_embeddings");
  NC_CHECK_AS(ErrorKind::InvalidArgument, orig.has_value() && *orig > 0,
              "config.json: yarn rope scaling needs 'original_max_position_embeddings' or "
              "'max_position_embeddings'");
  out.original_max_position = *orig;
  auto factor = opt_float(rs, "factor");
  out.factor = factor ? *factor : double(req_int(top, "max_position_embeddings")) / double(*orig);
  out.attention_factor = opt_float(rs, "attention_factor").value_or(0.0);
  out.beta_fast = opt_float(rs, "beta_fast").value_or(32.0);
  out.beta_slow = opt_float(rs, "beta_slow").value_or(1.0);
  if (out.beta_fast == 0) out.beta_fast = 32.0;  // transformers: `or 32`
  if (out.beta_slow == 0) out.beta_slow = 1.0;
  out.mscale = opt_float(rs, "mscale").value_or(0.0);
  out.mscale_all_dim = opt_float(rs, "mscale_all_dim").value_or(0.0);
  out.truncate = opt_bool(rs, "truncate").value_or(true);
  return out;
}

// One rope description (transformers < 5 "rope_scaling", or one entry of >= 5's
// "rope_parameters"), which spells its kind "rope_type" or, older, "type". `top` is the whole
// config (Phi-3 keeps original_max_position_embeddings there).
RopeScaling parse_rope_scaling(const json& rs, const json& top) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, rs.is_object(),
              "config.json: rope scaling must be an object, got {}", rs.dump());
  RopeScaling out;
  auto type = opt_string(rs, "rope_type");
  if (!type) type = opt_string(rs, "type");
  if (!type || *type == "default") return out;
  if (*type == "linear") {
    out.type = "linear";
    out.factor = req_float(rs, "factor", "linear rope scaling");
  } else if (*type == "llama3") {
    out.type = "llama3";
    const char* where = "llama3 rope scaling";
    out.factor = req_float(rs, "factor", where);
    out.low_freq_factor = req_float(rs, "low_freq_factor", where);
    out.high_freq_factor = req_float(rs, "high_freq_factor", where);
    auto orig = opt_int(rs, "original_max_position_embeddings");
    NC_CHECK_AS(ErrorKind::InvalidArgument, orig.has_value(),
                "config.json: {} needs 'original_max_position_embeddings'", where);
    out.original_max_position = *orig;
  } else if (*type == "longrope" || *type == "su") {  // "su": Phi-3's first name for it
    out.type = "longrope";
    const char* where = "longrope rope scaling";
    out.long_factor = req_floats(rs, "long_factor", where);
    out.short_factor = req_floats(rs, "short_factor", where);
    auto orig = opt_int(top, "original_max_position_embeddings");
    if (!orig) orig = opt_int(rs, "original_max_position_embeddings");
    NC_CHECK_AS(ErrorKind::InvalidArgument, orig.has_value(),
                "config.json: {} needs 'original_max_position_embeddings'", where);
    out.original_max_position = *orig;
    out.attention_factor = opt_float(rs, "attention_factor").value_or(0.0);
  } else if (*type == "yarn") {
    out = parse_yarn(rs, top);
  } else {
    fail_as(ErrorKind::Unsupported,
            "config.json: unsupported rope scaling type '{}' (supported: default, linear, llama3, "
            "longrope, yarn)",
            *type);
  }
  return out;
}

// transformers >= 5 keys "rope_parameters" by layer type for models whose layer kinds have their
// own rope (Gemma 3): {"full_attention": {...}, "sliding_attention": {...}}.
const json* rope_parameters_of(const json& j, const char* layer_type) {
  const json* rp = find_key(j, "rope_parameters");
  if (!rp || !rp->is_object()) return nullptr;
  if (const json* per = find_key(*rp, "full_attention"); per && per->is_object()) {
    return find_key(*rp, layer_type);
  }
  return rp;
}

// The full-attention layers' rope: base and scaling.
void read_rope(const json& j, ModelConfig& c) {
  const json* rp = rope_parameters_of(j, "full_attention");
  c.rope_theta = opt_float(j, "rope_theta").value_or(0.0);
  if (c.rope_theta == 0 && rp) c.rope_theta = opt_float(*rp, "rope_theta").value_or(0.0);
  if (c.rope_theta == 0) c.rope_theta = c.architecture == "gemma3" ? 1e6 : 10000.0;
  if (const json* rs = find_key(j, "rope_scaling")) {
    c.rope_scaling = parse_rope_scaling(*rs, j);
  } else if (rp) {
    c.rope_scaling = parse_rope_scaling(*rp, j);
  }
}

// A soft cap: the family's default when the key is absent, off when it is null.
double soft_cap_value(const json& j, const char* key, double family_default) {
  if (!j.contains(key)) return family_default;
  if (j.at(key).is_null()) return 0.0;
  const double v = opt_float(j, key).value();
  NC_CHECK_AS(ErrorKind::InvalidArgument, v >= 0 && std::isfinite(v),
              "config.json: '{}' must be a non-negative number or null, got {}", key, v);
  return v;
}

// The sliding window W (0 = none): absent means the family's default, null none.
int64_t sliding_window_value(const json& j, int64_t family_default) {
  if (!j.contains("sliding_window")) return family_default;
  return opt_int(j, "sliding_window").value_or(0);
}

Activation activation_of(const json& j, const char* key, const std::string& fallback) {
  const std::string a = opt_string(j, key).value_or(fallback);
  if (a == "silu") return Activation::Silu;
  if (a == "gelu_pytorch_tanh") return Activation::GeluTanh;
  fail_as(ErrorKind::Unsupported,
          "config.json: unsupported {} '{}' (supported: silu, gelu_pytorch_tanh)", key, a);
}

// Which layers slide: "layer_types" when given, else the family's pattern (every
// `pattern`-th layer full, the others sliding).
void read_layer_types(const json& j, ModelConfig& c, int64_t pattern) {
  c.layer_sliding.assign(size_t(c.num_layers), false);
  if (const json* lt = find_key(j, "layer_types")) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, lt->is_array() && int64_t(lt->size()) == c.num_layers,
                "config.json: 'layer_types' must list one type per layer ({}), got {}",
                c.num_layers, lt->is_array() ? std::to_string(lt->size()) : lt->dump());
    for (size_t i = 0; i < lt->size(); ++i) {
      const json& t = (*lt)[i];
      const std::string s = t.is_string() ? t.get<std::string>() : t.dump();
      NC_CHECK_AS(ErrorKind::Unsupported, s == "sliding_attention" || s == "full_attention",
                  "config.json: layer_types[{}] = '{}' is not supported (sliding_attention, "
                  "full_attention)",
                  i, s);
      c.layer_sliding[i] = s == "sliding_attention";
    }
    return;
  }
  NC_CHECK_AS(ErrorKind::InvalidArgument, pattern >= 1,
              "config.json: sliding_window_pattern must be positive, got {}", pattern);
  for (int64_t i = 0; i < c.num_layers; ++i) c.layer_sliding[size_t(i)] = (i + 1) % pattern != 0;
}

void read_gemma(const json& j, ModelConfig& c) {
  const bool g2 = c.architecture == "gemma2";
  // hidden_activation (null: fall back to hidden_act, as Gemma's modeling code does).
  c.activation = find_key(j, "hidden_activation")
                     ? activation_of(j, "hidden_activation", "")
                     : activation_of(j, "hidden_act", "gelu_pytorch_tanh");
  const double qpas = opt_float(j, "query_pre_attn_scalar").value_or(256.0);
  NC_CHECK_AS(ErrorKind::InvalidArgument, qpas > 0,
              "config.json: query_pre_attn_scalar must be positive, got {}", qpas);
  c.attn_scale = 1.0 / std::sqrt(qpas);
  c.attn_soft_cap = soft_cap_value(j, "attn_logit_softcapping", g2 ? 50.0 : 0.0);
  c.final_soft_cap = soft_cap_value(j, "final_logit_softcapping", g2 ? 30.0 : 0.0);
  c.sliding_window = sliding_window_value(j, 4096);
  read_layer_types(j, c, g2 ? 2 : opt_int(j, "sliding_window_pattern").value_or(6));
  c.scale_embeddings = c.sandwich_norms = c.norm_weight_offset = true;
  c.qk_norm = !g2;
  c.attention_bias = c.o_proj_bias = opt_bool(j, "attention_bias").value_or(false);
  if (!g2) {  // Gemma 3: the sliding layers' rope is the default one with its own base
    const json* local = rope_parameters_of(j, "sliding_attention");
    double theta = opt_float(j, "rope_local_base_freq").value_or(0.0);
    if (theta == 0 && local && local != rope_parameters_of(j, "full_attention")) {
      const RopeScaling s = parse_rope_scaling(*local, j);
      NC_CHECK_AS(ErrorKind::Unsupported, s.type == "none",
                  "config.json: rope scaling '{}' on sliding_attention layers is not supported",
                  s.type);
      theta = opt_float(*local, "rope_theta").value_or(0.0);
    }
    c.sliding_rope_theta = theta > 0 ? theta : 10000.0;
  }
}

// DeepSeek-V2/V3: the MLA dimensions (model_config.h, MlaConfig); the MoE fields are
// read_moe_hf's (model/moe_config.h).
void read_deepseek(const json& j, ModelConfig& c) {
  c.activation = activation_of(j, "hidden_act", "silu");
  MlaConfig& m = c.mla;
  m.kv_lora_rank = req_int(j, "kv_lora_rank");
  m.q_lora_rank = opt_int(j, "q_lora_rank").value_or(0);
  m.qk_nope_head_dim = req_int(j, "qk_nope_head_dim");
  m.v_head_dim = req_int(j, "v_head_dim");
  c.head_dim = req_int(j, "qk_rope_head_dim");
  c.num_kv_heads = 1;
  m.rope_interleave =
      c.architecture == "deepseek_v2" || opt_bool(j, "rope_interleave").value_or(true);
  c.attention_bias = c.o_proj_bias = opt_bool(j, "attention_bias").value_or(false);
  double scale = 1.0 / std::sqrt(double(m.qk_nope_head_dim + c.head_dim));
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type == "yarn" && rs.mscale_all_dim != 0 && rs.factor > 1) {
    const double ms = 0.1 * rs.mscale_all_dim * std::log(rs.factor) + 1.0;
    scale *= ms * ms;
  }
  c.attn_scale = scale;
}

// quantization_config: "fp8" (per-tensor or per-channel scales beside each weight, dynamic or
// static activation scales) is served; block-wise scales (DeepSeek-V3's weight_block_size) and
// other methods are refused by name.
void read_quantization(const json& j, ModelConfig& c) {
  const json* q = find_key(j, "quantization_config");
  if (!q) return;
  NC_CHECK_AS(ErrorKind::InvalidArgument, q->is_object(),
              "config.json: 'quantization_config' must be an object, got {}", q->dump());
  const std::string method = opt_string(*q, "quant_method").value_or("");
  NC_CHECK_AS(ErrorKind::Unsupported, method == "fp8",
              "config.json: quantization_config.quant_method '{}' is not supported (only fp8)",
              method);
  NC_CHECK_AS(ErrorKind::Unsupported, find_key(*q, "weight_block_size") == nullptr,
              "config.json: fp8 with block-wise scales (quantization_config.weight_block_size {}) "
              "is not supported; only per-tensor and per-channel weight scales are",
              find_key(*q, "weight_block_size") ? find_key(*q, "weight_block_size")->dump() : "");
  c.quantization = "fp8";
}

}  // namespace

ModelConfig config_from_hf_json(const json& j) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, j.is_object(), "config.json must be a JSON object");
  for (const char* k : {"vision_config", "text_config", "audio_config"}) {
    NC_CHECK_AS(ErrorKind::Unsupported, !j.contains(k),
                "config.json: '{}' is set (a multimodal checkpoint); only text models are "
                "supported (e.g. Gemma3ForCausalLM, model_type gemma3_text)",
                k);
  }
  ModelConfig c;
  c.architecture = hf_architecture(j);
  const bool gemma = c.architecture.starts_with("gemma");
  c.num_layers = checked_layer_count(req_int(j, "num_hidden_layers"), "num_hidden_layers");
  c.hidden_size = req_int(j, "hidden_size");
  c.num_heads = req_int(j, "num_attention_heads");
  NC_CHECK_AS(ErrorKind::InvalidArgument, c.num_heads > 0,
              "config.json: num_attention_heads must be positive, got {}", c.num_heads);
  c.num_kv_heads = opt_int(j, "num_key_value_heads").value_or(c.num_heads);
  if (auto hd = opt_int(j, "head_dim")) {
    c.head_dim = *hd;
  } else {
    NC_CHECK_AS(ErrorKind::InvalidArgument, c.hidden_size % c.num_heads == 0,
                "config.json: hidden_size {} is not a multiple of num_attention_heads {} (and no "
                "head_dim is given)",
                c.hidden_size, c.num_heads);
    c.head_dim = c.hidden_size / c.num_heads;
  }
  c.intermediate_size = req_int(j, "intermediate_size");
  c.vocab_size = req_int(j, "vocab_size");
  c.max_position = req_int(j, "max_position_embeddings");
  read_rope(j, c);
  c.rms_eps = opt_float(j, "rms_norm_eps").value_or(1e-6);
  // transformers leaves out a value equal to both its base default (tied) and the family's:
  // Gemma's configs omit tie_word_embeddings = true.
  c.tie_embeddings = opt_bool(j, "tie_word_embeddings").value_or(gemma);
  if (c.architecture == "qwen2") {
    c.attention_bias = true;  // Qwen2 always has q/k/v biases and never an o_proj bias
  } else {
    c.attention_bias = c.o_proj_bias = opt_bool(j, "attention_bias").value_or(false);
  }
  c.qk_norm = c.architecture == "qwen3" || c.architecture == "qwen3_moe";
  if (c.architecture.starts_with("qwen")) {  // Qwen's window on its upper layers: not served
    NC_CHECK_AS(ErrorKind::Unsupported, !opt_bool(j, "use_sliding_window").value_or(false),
                "config.json: use_sliding_window = true is not supported for {}", c.architecture);
  }
  if (c.architecture.starts_with("deepseek")) {
    read_deepseek(j, c);
  } else if (gemma) {
    read_gemma(j, c);
  } else {
    c.activation = activation_of(j, "hidden_act", "silu");
    if (c.architecture == "mistral") c.sliding_window = sliding_window_value(j, 4096);
    if (c.architecture == "phi3") {
      c.sliding_window = sliding_window_value(j, 0);
      const double prf = opt_float(j, "partial_rotary_factor").value_or(1.0);
      NC_CHECK_AS(ErrorKind::Unsupported, prf == 1.0,
                  "config.json: partial_rotary_factor {} is not supported (only 1.0)", prf);
    }
  }
  NC_CHECK_AS(ErrorKind::Unsupported, !opt_bool(j, "mlp_bias").value_or(false),
              "config.json: mlp_bias = true is not supported");
  read_moe_hf(j, c);
  read_quantization(j, c);
  c.validate();
  return c;
}

}  // namespace nc

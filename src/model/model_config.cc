#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>
#include <optional>

#include "core/error.h"
#include "formats/gguf.h"

namespace nc {
namespace {

using json = nlohmann::json;

// ---- Hugging Face config.json ----

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
  if (cls == "LlamaForCausalLM") return "llama";
  if (cls == "Qwen2ForCausalLM") return "qwen2";
  if (cls == "Qwen3ForCausalLM") return "qwen3";
  return std::nullopt;
}

std::optional<std::string> arch_of_model_type(const std::string& t) {
  if (t == "llama" || t == "qwen2" || t == "qwen3") return t;
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
          "Qwen3ForCausalLM)",
          seen);
}

// Rope scaling lives in "rope_scaling" (transformers < 5) or, merged with rope_theta, in
// "rope_parameters" (transformers >= 5). Both spell the kind "rope_type" or, older, "type".
RopeScaling hf_rope_scaling(const json& j) {
  const json* rs = find_key(j, "rope_scaling");
  if (!rs) rs = find_key(j, "rope_parameters");
  RopeScaling out;
  if (!rs) return out;
  NC_CHECK_AS(ErrorKind::InvalidArgument, rs->is_object(),
              "config.json: rope scaling must be an object, got {}", rs->dump());
  auto type = opt_string(*rs, "rope_type");
  if (!type) type = opt_string(*rs, "type");
  if (!type || *type == "default") return out;
  if (*type == "linear") {
    out.type = "linear";
    out.factor = req_float(*rs, "factor", "linear rope scaling");
  } else if (*type == "llama3") {
    out.type = "llama3";
    const char* where = "llama3 rope scaling";
    out.factor = req_float(*rs, "factor", where);
    out.low_freq_factor = req_float(*rs, "low_freq_factor", where);
    out.high_freq_factor = req_float(*rs, "high_freq_factor", where);
    auto orig = opt_int(*rs, "original_max_position_embeddings");
    NC_CHECK_AS(ErrorKind::InvalidArgument, orig.has_value(),
                "config.json: {} needs 'original_max_position_embeddings'", where);
    out.original_max_position = *orig;
  } else {
    fail_as(ErrorKind::Unsupported,
            "config.json: unsupported rope scaling type '{}' (supported: default, linear, llama3)",
            *type);
  }
  return out;
}

double hf_rope_theta(const json& j) {
  if (auto t = opt_float(j, "rope_theta")) return *t;
  if (const json* rp = find_key(j, "rope_parameters"); rp && rp->is_object()) {
    if (auto t = opt_float(*rp, "rope_theta")) return *t;
  }
  return 10000.0;  // transformers' default for all three families
}

// ---- GGUF metadata ----

std::optional<int64_t> gguf_array_len(const GgufFile& f, const std::string& key) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end()) return std::nullopt;
  const auto* arr = std::get_if<GgufArray>(&it->second.v);
  NC_CHECK_AS(ErrorKind::InvalidArgument, arr != nullptr, "GGUF: '{}' must be an array", key);
  return int64_t(arr->size());
}

// Vocabulary size: the embedding's rows (what the weights must match), else the metadata.
int64_t gguf_vocab_size(const GgufFile& f, const std::string& arch) {
  if (const GgufTensorInfo* t = f.find_tensor("token_embd.weight"); t && t->ne.size() == 2) {
    return t->ne[1];
  }
  if (f.has(arch + ".vocab_size")) return f.get_int(arch + ".vocab_size");
  auto n = gguf_array_len(f, "tokenizer.ggml.tokens");
  NC_CHECK_AS(ErrorKind::InvalidArgument, n.has_value(),
              "GGUF: cannot tell the vocabulary size (no token_embd.weight, no {}."
              "vocab_size, no tokenizer.ggml.tokens)",
              arch);
  return *n;
}

// llama.cpp stores Llama-3 rope scaling not as metadata but as per-frequency divisors
// (rope_freqs.weight, head_dim/2 values): 1 for high frequencies, `factor` for low ones and
// 1 / ((1 - s) / factor + s) in between, where s = (L / wavelen - low) / (high - low) is linear
// in the frequency. Two points of that middle band give s exactly; the band edges are where s
// crosses 0 and 1, and only the ratios low/L and high/L matter, so L is fixed to the original
// context length when known and to 8192 otherwise.
RopeScaling llama3_from_rope_freqs(const std::vector<float>& r, double theta, int64_t head_dim,
                                   int64_t orig_ctx) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, int64_t(r.size()) * 2 == head_dim,
              "GGUF: rope_freqs.weight has {} values, expected head_dim/2 = {}", r.size(),
              head_dim / 2);
  double factor = 1.0;
  for (float v : r) factor = std::max(factor, double(v));
  RopeScaling out;
  if (factor <= 1.0) return out;                // all ones: no scaling
  std::vector<std::pair<double, double>> band;  // (frequency, s)
  for (size_t i = 0; i < r.size(); ++i) {
    const double v = r[i];
    if (v > 1.0 + 1e-6 && v < factor * (1.0 - 1e-6)) {
      const double freq = std::pow(theta, -double(2 * i) / double(head_dim));
      band.emplace_back(freq, (1.0 / v - 1.0 / factor) / (1.0 - 1.0 / factor));
    }
  }
  NC_CHECK_AS(ErrorKind::InvalidArgument, band.size() >= 2,
              "GGUF: rope_freqs.weight does not look like Llama-3 rope scaling (fewer than two "
              "values between 1 and {}); this model's rope scaling is not supported",
              factor);
  const auto [f0, s0] = band.front();
  const auto [f1, s1] = band.back();
  const double a = (s1 - s0) / (f1 - f0);  // s = a * freq + b
  const double b = s0 - a * f0;
  NC_CHECK_AS(ErrorKind::InvalidArgument, a > 0,
              "GGUF: rope_freqs.weight is not Llama-3 rope scaling");
  // s = (L * freq / (2 pi) - low) / (high - low)  =>  a = L / (2 pi (high - low)), b = -low / (high
  // - low)
  const double L = orig_ctx > 0 ? double(orig_ctx) : 8192.0;
  const double width = L / (2.0 * std::numbers::pi * a);
  out.type = "llama3";
  out.factor = factor;
  out.low_freq_factor = -b * width;
  out.high_freq_factor = out.low_freq_factor + width;
  out.original_max_position = int64_t(L);
  return out;
}

RopeScaling gguf_rope_scaling(const GgufFile& f, const std::string& arch, double theta,
                              int64_t head_dim) {
  const std::string p = arch + ".rope.scaling.";
  const int64_t orig = f.get_int(p + "original_context_length", 0);
  if (const GgufTensorInfo* t = f.find_tensor("rope_freqs.weight")) {
    return llama3_from_rope_freqs(f.load_f32(*t).data, theta, head_dim, orig);
  }
  RopeScaling out;
  const std::string type = f.get_string(p + "type", "none");
  if (type == "none") {
    // Older files spell linear scaling as a bare factor.
    const double lin = f.get_float(arch + ".rope.scale_linear", 1.0);
    if (lin != 1.0) {
      out.type = "linear";
      out.factor = lin;
    }
    return out;
  }
  NC_CHECK_AS(ErrorKind::Unsupported, type == "linear",
              "GGUF: unsupported rope scaling type '{}' (supported: none, linear, "
              "llama3 through rope_freqs.weight)",
              type);
  out.type = "linear";
  out.factor = f.get_float(p + "factor");
  return out;
}

}  // namespace

void ModelConfig::validate() const {
  NC_CHECK_AS(ErrorKind::Unsupported,
              architecture == "llama" || architecture == "qwen2" || architecture == "qwen3",
              "unsupported architecture '{}' (supported: llama, qwen2, qwen3)", architecture);
  const std::pair<const char*, int64_t> sizes[] = {
      {"num_layers", num_layers}, {"hidden_size", hidden_size},
      {"num_heads", num_heads},   {"num_kv_heads", num_kv_heads},
      {"head_dim", head_dim},     {"intermediate_size", intermediate_size},
      {"vocab_size", vocab_size}, {"max_position", max_position}};
  // Generous upper bounds (far beyond any real model) keep products such as vocab * hidden or
  // heads * head_dim well inside int64 for every consumer of the config.
  constexpr int64_t kMaxSize = int64_t(1) << 24;
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
              rs.type == "none" || rs.type == "linear" || rs.type == "llama3",
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
}

ModelConfig config_from_hf_json(const json& j) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, j.is_object(), "config.json must be a JSON object");
  ModelConfig c;
  c.architecture = hf_architecture(j);
  c.num_layers = req_int(j, "num_hidden_layers");
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
  c.rope_theta = hf_rope_theta(j);
  c.rope_scaling = hf_rope_scaling(j);
  c.rms_eps = opt_float(j, "rms_norm_eps").value_or(1e-6);
  c.tie_embeddings = opt_bool(j, "tie_word_embeddings").value_or(false);
  if (c.architecture == "qwen2") {
    c.attention_bias = true;  // Qwen2 always has q/k/v biases and never an o_proj bias
  } else {
    c.attention_bias = c.o_proj_bias = opt_bool(j, "attention_bias").value_or(false);
  }
  c.qk_norm = c.architecture == "qwen3";
  NC_CHECK_AS(ErrorKind::Unsupported, !opt_bool(j, "mlp_bias").value_or(false),
              "config.json: mlp_bias = true is not supported");
  c.validate();
  return c;
}

ModelConfig config_from_gguf(const GgufFile& f) {
  ModelConfig c;
  const std::string arch = f.get_string("general.architecture");
  NC_CHECK_AS(ErrorKind::Unsupported, arch == "llama" || arch == "qwen2" || arch == "qwen3",
              "GGUF: unsupported architecture '{}' (supported: llama, qwen2, qwen3)", arch);
  c.architecture = arch;
  const std::string p = arch + ".";
  c.num_layers = f.get_int(p + "block_count");
  c.hidden_size = f.get_int(p + "embedding_length");
  c.num_heads = f.get_int(p + "attention.head_count");
  NC_CHECK_AS(ErrorKind::InvalidArgument, c.num_heads > 0,
              "GGUF: {}attention.head_count must be positive", p);
  c.num_kv_heads = f.get_int(p + "attention.head_count_kv", c.num_heads);
  if (f.has(p + "attention.key_length")) {
    c.head_dim = f.get_int(p + "attention.key_length");
  } else {
    NC_CHECK_AS(ErrorKind::InvalidArgument, c.hidden_size % c.num_heads == 0,
                "GGUF: {}embedding_length {} is not a multiple of the head count {}", p,
                c.hidden_size, c.num_heads);
    c.head_dim = c.hidden_size / c.num_heads;
  }
  const int64_t vlen = f.get_int(p + "attention.value_length", c.head_dim);
  NC_CHECK_AS(ErrorKind::Unsupported, vlen == c.head_dim,
              "GGUF: value_length {} differs from key_length {}: not supported", vlen, c.head_dim);
  c.intermediate_size = f.get_int(p + "feed_forward_length");
  c.vocab_size = gguf_vocab_size(f, arch);
  c.max_position = f.get_int(p + "context_length");
  c.rope_theta = f.get_float(p + "rope.freq_base", 10000.0);
  c.rms_eps = f.get_float(p + "attention.layer_norm_rms_epsilon");
  c.rope_scaling = gguf_rope_scaling(f, arch, c.rope_theta, c.head_dim);
  c.tie_embeddings = f.find_tensor("output.weight") == nullptr;
  c.attention_bias = arch == "qwen2" || f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.o_proj_bias = f.find_tensor("blk.0.attn_output.bias") != nullptr;
  c.qk_norm = arch == "qwen3";
  c.validate();
  return c;
}

}  // namespace nc

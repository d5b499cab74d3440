// ModelConfig from GGUF metadata (model/model_config.h), with llama.cpp's keys and its
// converter's conventions (docs/models.md).
#include <cmath>
#include <numbers>
#include <optional>
#include <variant>

#include "core/error.h"
#include "formats/gguf.h"
#include "model/model_config.h"

namespace nc {
namespace {

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

// Phi-3's longrope as llama.cpp's converter writes it: the two factor lists as tensors, the
// original context and the cos/sin factor as metadata.
RopeScaling longrope_from_gguf(const GgufFile& f, const GgufTensorInfo& long_t,
                               const std::string& arch, int64_t orig) {
  const GgufTensorInfo* short_t = f.find_tensor("rope_factors_short.weight");
  NC_CHECK_AS(ErrorKind::InvalidArgument, short_t != nullptr,
              "GGUF: rope_factors_long.weight without rope_factors_short.weight");
  NC_CHECK_AS(ErrorKind::InvalidArgument, orig > 0,
              "GGUF: longrope needs {}.rope.scaling.original_context_length", arch);
  RopeScaling out;
  out.type = "longrope";
  for (float v : f.load_f32(long_t).data) out.long_factor.push_back(v);
  for (float v : f.load_f32(*short_t).data) out.short_factor.push_back(v);
  out.original_max_position = orig;
  out.attention_factor = f.get_float(arch + ".rope.scaling.attn_factor", 0.0);
  return out;
}

RopeScaling gguf_rope_scaling(const GgufFile& f, const std::string& arch, double theta,
                              int64_t head_dim) {
  const std::string p = arch + ".rope.scaling.";
  const int64_t orig = f.get_int(p + "original_context_length", 0);
  if (const GgufTensorInfo* t = f.find_tensor("rope_factors_long.weight")) {
    return longrope_from_gguf(f, *t, arch, orig);
  }
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

// Which layers slide: llama.cpp's sliding_window_pattern (an array of flags, or n: every n-th
// layer full), else the family's pattern.
std::vector<bool> gguf_layer_sliding(const GgufFile& f, const std::string& arch, int64_t layers,
                                     int64_t pattern) {
  const std::string key = arch + ".attention.sliding_window_pattern";
  std::vector<bool> out(size_t(layers), false);
  auto it = f.metadata().find(key);
  if (it != f.metadata().end()) {
    if (const auto* arr = std::get_if<GgufArray>(&it->second.v)) {
      NC_CHECK_AS(ErrorKind::InvalidArgument, int64_t(arr->size()) == layers,
                  "GGUF: {} has {} entries for {} layers", key, arr->size(), layers);
      for (size_t i = 0; i < arr->size(); ++i) {
        const bool* b = std::get_if<bool>(&(*arr)[i].v);
        NC_CHECK_AS(ErrorKind::InvalidArgument, b != nullptr, "GGUF: {} must hold booleans", key);
        out[i] = *b;
      }
      return out;
    }
    pattern = f.get_int(key);
  }
  NC_CHECK_AS(ErrorKind::InvalidArgument, pattern >= 1, "GGUF: {} must be positive, got {}", key,
              pattern);
  for (int64_t i = 0; i < layers; ++i) out[size_t(i)] = (i + 1) % pattern != 0;
  return out;
}

// Gemma 2 / 3 as llama.cpp reads them. The attention scale is not stored: llama.cpp uses
// 1/sqrt(head_dim), or 1/sqrt(hidden / heads) for the 27B models (46 / 62 layers).
void gguf_gemma(const GgufFile& f, const std::string& arch, ModelConfig& c) {
  const bool g2 = arch == "gemma2";
  const std::string p = arch + ".";
  c.activation = Activation::GeluTanh;
  c.scale_embeddings = c.sandwich_norms = true;
  c.norm_weight_offset = false;  // the converter stored 1 + w
  c.qk_norm = !g2;
  const bool big = c.num_layers == (g2 ? 46 : 62);
  c.attn_scale = 1.0 / std::sqrt(double(big ? c.hidden_size / c.num_heads : c.head_dim));
  c.attn_soft_cap = g2 ? f.get_float(p + "attn_logit_softcapping", 50.0) : 0.0;
  c.final_soft_cap = f.get_float(p + "final_logit_softcapping", g2 ? 30.0 : 0.0);
  c.sliding_window = f.get_int(p + "attention.sliding_window", g2 ? 4096 : 0);
  if (c.sliding_window > 0) c.layer_sliding = gguf_layer_sliding(f, arch, c.num_layers, g2 ? 2 : 6);
  if (!g2) c.sliding_rope_theta = f.get_float(p + "rope.freq_base_swa", 10000.0);
}

}  // namespace

ModelConfig config_from_gguf(const GgufFile& f) {
  ModelConfig c;
  const std::string arch = f.get_string("general.architecture");
  if (arch == "deepseek2") return config_from_gguf_deepseek2(f);  // config_gguf_deepseek.cc
  NC_CHECK_AS(ErrorKind::Unsupported,
              arch == "llama" || arch == "qwen2" || arch == "qwen3" || arch == "phi3" ||
                  arch == "gemma2" || arch == "gemma3" || arch == "qwen3moe",
              "GGUF: unsupported architecture '{}' (supported: llama, qwen2, qwen3, phi3, gemma2, "
              "gemma3, qwen3moe, deepseek2)",
              arch);
  c.architecture = arch == "qwen3moe" ? "qwen3_moe" : arch;
  const std::string p = arch + ".";
  c.num_layers = checked_layer_count(f.get_int(p + "block_count"), "block_count");
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
  const int64_t rot = f.get_int(p + "rope.dimension_count", c.head_dim);
  NC_CHECK_AS(ErrorKind::Unsupported, rot == c.head_dim,
              "GGUF: {}rope.dimension_count {} differs from the head size {}: partial rotary "
              "embeddings are not supported",
              p, rot, c.head_dim);
  c.intermediate_size = f.get_int(p + "feed_forward_length");
  c.vocab_size = gguf_vocab_size(f, arch);
  c.max_position = f.get_int(p + "context_length");
  c.rope_theta = f.get_float(p + "rope.freq_base", 10000.0);
  c.rms_eps = f.get_float(p + "attention.layer_norm_rms_epsilon");
  c.rope_scaling = gguf_rope_scaling(f, arch, c.rope_theta, c.head_dim);
  c.tie_embeddings = f.find_tensor("output.weight") == nullptr;
  c.attention_bias = arch == "qwen2" || f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.o_proj_bias = f.find_tensor("blk.0.attn_output.bias") != nullptr;
  c.qk_norm = arch == "qwen3" || arch == "qwen3moe";
  if (arch == "gemma2" || arch == "gemma3") {
    gguf_gemma(f, arch, c);
  } else {
    // Mistral files say "llama"; a window of 0 means none (Phi-4 is a "phi3" without one).
    c.sliding_window = f.get_int(p + "attention.sliding_window", 0);
  }
  read_moe_gguf(f, arch, c);
  c.validate();
  return c;
}

}  // namespace nc

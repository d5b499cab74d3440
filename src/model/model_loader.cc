#include "model/model_loader.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"
#include "core/tensor.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/deepseek.h"
#include "model/moe_weights.h"

namespace nc {
namespace {

namespace fs = std::filesystem;

// "blk.<N>.<rest>": N as a plain decimal layer index, or -1 when the name has another form.
int64_t gguf_block_index(const std::string& name, std::string* rest) {
  constexpr std::string_view kPrefix = "blk.";
  if (name.compare(0, kPrefix.size(), kPrefix) != 0) return -1;
  size_t i = kPrefix.size();
  int64_t n = 0;
  const size_t digits_begin = i;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && i - digits_begin < 9) {
    n = n * 10 + (name[i] - '0');
    ++i;
  }
  if (i == digits_begin || i >= name.size() || name[i] != '.') return -1;
  *rest = name.substr(i + 1);
  return n;
}

// A block tensor's Hugging Face part name. Gemma's norms: attn_norm before the attention,
// post_attention_norm after it, ffn_norm before the MLP, post_ffw_norm after it. Phi-3 stores
// q/k/v fused (attn_qkv) and gate/up fused in ffn_up.
const char* hf_layer_part(const std::string& gguf_part, const std::string& arch) {
  if (const char* moe = gguf_moe_part(gguf_part)) return moe;
  const bool gemma = arch == "gemma2" || arch == "gemma3";
  if (gemma && gguf_part == "ffn_norm") return "pre_feedforward_layernorm";
  if (gemma && gguf_part == "post_attention_norm") return "post_attention_layernorm";
  if (gemma && gguf_part == "post_ffw_norm") return "post_feedforward_layernorm";
  if (arch == "phi3" && gguf_part == "ffn_up") return "mlp.gate_up_proj";
  static const std::pair<const char*, const char*> kParts[] = {
      {"attn_q", "self_attn.q_proj"},
      {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"},
      {"attn_q_norm", "self_attn.q_norm"},
      {"attn_k_norm", "self_attn.k_norm"},
      {"attn_qkv", "self_attn.qkv_proj"},
      {"attn_norm", "input_layernorm"},
      {"ffn_norm", "post_attention_layernorm"},
      {"ffn_gate", "mlp.gate_proj"},
      {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},
      // DeepSeek's MLA (deepseek2): kv_b split into k_b / v_b by newer converters.
      {"attn_q_a", "self_attn.q_a_proj"},
      {"attn_q_a_norm", "self_attn.q_a_layernorm"},
      {"attn_q_b", "self_attn.q_b_proj"},
      {"attn_kv_a_mqa", "self_attn.kv_a_proj_with_mqa"},
      {"attn_kv_a_norm", "self_attn.kv_a_layernorm"},
      {"attn_kv_b", "self_attn.kv_b_proj"},
      {"attn_k_b", "self_attn.k_b_proj"},
      {"attn_v_b", "self_attn.v_b_proj"}};
  for (const auto& [g, h] : kParts) {
    if (gguf_part == g) return h;
  }
  return nullptr;
}

LoadedModel load_gguf(const std::string& path) {
  const GgufFile f = GgufFile::open(path);
  LoadedModel m;
  m.config = config_from_gguf(f);
  const bool permuted = m.config.architecture == "llama";
  for (const GgufTensorInfo& t : f.tensors()) {
    const std::string hf = gguf_to_hf_name(t.name, m.config.architecture);
    if (hf.empty()) continue;  // not a decoder weight (rope_freqs.weight went into the config)
    // Matrices stay in their stored format where a DType holds it (the CPU backend computes on
    // it; others dequantize at upload); vectors (norms, biases) become float32.
    HostTensor x = t.ne.size() >= 2 ? f.load_raw(t) : f.load_f32(t);  // 3-D: stacked experts
    if (permuted && hf.find(".self_attn.q_proj.") != std::string::npos) {
      unpermute_gguf_qk(x, m.config.num_heads, t.name);
    } else if (permuted && hf.find(".self_attn.k_proj.") != std::string::npos) {
      unpermute_gguf_qk(x, m.config.num_kv_heads, t.name);
    }
    m.weights.emplace(hf, std::move(x));
  }
  stack_moe_weights(m.config, m.weights);
  if (m.config.mla.enabled()) merge_gguf_kv_b(m.config, m.weights);
  check_weights(m.config, m.weights);
  return m;
}

// Gemma's RMSNorm scales by (1 + w): the decoder's norms scale by their weight, so 1 is added to
// every norm weight once, here (in float32, as Gemma's norm computes 1 + w).
void add_norm_offset(WeightMap& w) {
  for (auto& [name, t] : w) {
    if (!name.ends_with("norm.weight")) continue;
    if (t.is_raw()) t = dequantized(t);
    for (float& x : t.data) x += 1.0f;
  }
}

ModelConfig read_config_json(const fs::path& cfg_path) {
  return config_from_hf_json(read_json_file(cfg_path));
}

LoadedModel load_hf_folder(const fs::path& dir) {
  const fs::path cfg_path = dir / "config.json";
  NC_CHECK_AS(ErrorKind::NotFound, fs::is_regular_file(cfg_path),
              "{} has no config.json: not a Hugging Face checkpoint folder", dir.string());
  LoadedModel m;
  m.config = read_config_json(cfg_path);
  m.weights = load_safetensors_dir(dir.string());
  // With tied embeddings the decoder reads the embedding; a stored copy would only cost memory.
  if (m.config.tie_embeddings) m.weights.erase("lm_head.weight");
  if (m.config.mla.enabled()) drop_mtp_layers(m.config, m.weights);
  if (m.config.norm_weight_offset) add_norm_offset(m.weights);
  stack_moe_weights(m.config, m.weights);
  check_weights(m.config, m.weights);
  return m;
}

bool has_gguf_magic(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace

std::string gguf_to_hf_name(const std::string& name, const std::string& arch) {
  if (name == "token_embd.weight") return "model.embed_tokens.weight";
  if (name == "output_norm.weight") return "model.norm.weight";
  if (name == "output.weight") return "lm_head.weight";
  std::string rest;
  const int64_t layer = gguf_block_index(name, &rest);
  if (layer < 0) return "";
  const size_t dot = rest.rfind('.');
  if (dot == std::string::npos) return "";
  const std::string kind = rest.substr(dot + 1);
  if (kind != "weight" && kind != "bias") return "";
  const char* part = hf_layer_part(rest.substr(0, dot), arch);
  if (!part) return "";
  return fmt::format("model.layers.{}.{}.{}", layer, part, kind);
}

void unpermute_gguf_qk(HostTensor& t, int64_t n_head, const std::string& name) {
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              !t.shape.empty() && n_head > 0 && t.shape[0] % (2 * n_head) == 0,
              "GGUF tensor '{}' with shape {} cannot hold {} heads of even size", name,
              shape_str(t.shape), n_head);
  const int64_t rows = t.shape[0];
  const int64_t cols = rows > 0 ? t.numel() / rows : 0;
  const int64_t head_dim = rows / n_head;
  const int64_t half = head_dim / 2;
  // A permutation of whole rows, so raw (quantized) rows move as they are: a row of a block
  // format is its own blocks.
  const size_t row_bytes = t.is_raw() ? dtype_bytes(t.dtype, cols) : size_t(cols) * sizeof(float);
  uint8_t* src = t.is_raw() ? t.raw.data() : reinterpret_cast<uint8_t*>(t.data.data());
  const size_t total = t.is_raw() ? t.raw.size() : t.data.size() * sizeof(float);
  NC_CHECK_AS(ErrorKind::InvalidArgument, total == size_t(rows) * row_bytes,
              "GGUF tensor '{}' holds {} bytes for {} rows of {}", name, total, rows, row_bytes);
  // The file holds row (h, j, i) of a [n_head, half, 2] grid where HF has (h, i, j) of
  // [n_head, 2, half].
  std::vector<uint8_t> out(total);
  for (int64_t h = 0; h < n_head; ++h) {
    for (int64_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < half; ++j) {
        const int64_t hf_row = h * head_dim + i * half + j;
        const int64_t file_row = h * head_dim + j * 2 + i;
        std::memcpy(out.data() + hf_row * row_bytes, src + file_row * row_bytes, row_bytes);
      }
    }
  }
  std::memcpy(src, out.data(), total);
}

std::vector<WeightSpec> expected_weights(const ModelConfig& c) {
  const int64_t q = c.num_heads * c.head_dim;
  const int64_t kv = c.num_kv_heads * c.head_dim;
  const int64_t h = c.hidden_size;
  const bool phi3 = c.architecture == "phi3";
  std::vector<WeightSpec> w;
  w.push_back({"model.embed_tokens.weight", {c.vocab_size, h}});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    if (c.mla.enabled()) {  // DeepSeek (model/deepseek.h)
      append_deepseek_layer_specs(c, l, w);
      continue;
    }
    const std::string p = fmt::format("model.layers.{}.", l);
    w.push_back({p + "input_layernorm.weight", {h}});
    if (phi3) {  // Phi-3's checkpoints store q/k/v and gate/up fused
      w.push_back({p + "self_attn.qkv_proj.weight", {q + 2 * kv, h}});
    } else {
      w.push_back({p + "self_attn.q_proj.weight", {q, h}});
      w.push_back({p + "self_attn.k_proj.weight", {kv, h}});
      w.push_back({p + "self_attn.v_proj.weight", {kv, h}});
    }
    w.push_back({p + "self_attn.o_proj.weight", {h, q}});
    if (c.attention_bias) {
      w.push_back({p + "self_attn.q_proj.bias", {q}});
      w.push_back({p + "self_attn.k_proj.bias", {kv}});
      w.push_back({p + "self_attn.v_proj.bias", {kv}});
    }
    if (c.o_proj_bias) w.push_back({p + "self_attn.o_proj.bias", {h}});
    if (c.qk_norm) {
      w.push_back({p + "self_attn.q_norm.weight", {c.head_dim}});
      w.push_back({p + "self_attn.k_norm.weight", {c.head_dim}});
    }
    w.push_back({p + "post_attention_layernorm.weight", {h}});
    if (c.sandwich_norms) {
      w.push_back({p + "pre_feedforward_layernorm.weight", {h}});
      w.push_back({p + "post_feedforward_layernorm.weight", {h}});
    }
    if (c.moe.is_sparse(l)) {
      append_moe_weight_specs(c, l, w);
    } else if (phi3) {
      w.push_back({p + "mlp.gate_up_proj.weight", {2 * c.intermediate_size, h}});
    } else {
      w.push_back({p + "mlp.gate_proj.weight", {c.intermediate_size, h}});
      w.push_back({p + "mlp.up_proj.weight", {c.intermediate_size, h}});
    }
    if (!c.moe.is_sparse(l)) w.push_back({p + "mlp.down_proj.weight", {h, c.intermediate_size}});
  }
  w.push_back({"model.norm.weight", {h}});
  if (!c.tie_embeddings) w.push_back({"lm_head.weight", {c.vocab_size, h}});
  return w;
}

void check_weights(const ModelConfig& cfg, const WeightMap& w) {
  cfg.validate();
  for (const WeightSpec& s : expected_weights(cfg)) {
    auto it = w.find(s.name);
    if (it == w.end()) {
      if (s.name == "lm_head.weight") {
        fail_as(ErrorKind::InvalidArgument,
                "missing tensor lm_head.weight (expected shape {}; embeddings are not tied)",
                shape_str(s.shape));
      }
      fail_as(ErrorKind::InvalidArgument, "missing tensor {} (expected shape {})", s.name,
              shape_str(s.shape));
    }
    const HostTensor& t = it->second;
    NC_CHECK_AS(ErrorKind::InvalidArgument, t.shape == s.shape,
                "tensor {} has shape {}, expected {}", s.name, shape_str(t.shape),
                shape_str(s.shape));
    if (t.is_raw()) {
      NC_CHECK_AS(ErrorKind::InvalidArgument,
                  t.shape.size() >= 2 && t.raw.size() == dtype_bytes(t.dtype, t.numel()),
                  "tensor {} holds {} bytes of {} for shape {}", s.name, t.raw.size(),
                  dtype_name(t.dtype), shape_str(t.shape));
    } else {
      NC_CHECK_AS(ErrorKind::InvalidArgument, int64_t(t.data.size()) == t.numel(),
                  "tensor {} holds {} values for shape {}", s.name, t.data.size(),
                  shape_str(t.shape));
    }
  }
}

namespace {

// The status of `path`, which must exist ("<what> <path> does not exist", NotFound, if not).
fs::file_status existing_status(const std::string& path, const char* what) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  NC_CHECK_AS(ErrorKind::NotFound, !ec && fs::exists(st), "{} {} does not exist", what, path);
  return st;
}

}  // namespace

LoadedModel load_model(const std::string& path) {
  const fs::path p(path);
  const fs::file_status st = existing_status(path, "model path");
  if (fs::is_directory(st)) return load_hf_folder(p);
  NC_CHECK_AS(ErrorKind::Unsupported, fs::is_regular_file(st) && has_gguf_magic(p),
              "unknown model format: {} (expected a .gguf file or a Hugging Face checkpoint folder "
              "with config.json and safetensors weights)",
              path);
  return load_gguf(path);
}

LoadFormat parse_load_format(const std::string& name) {
  if (name == "auto" || name.empty()) return LoadFormat::Auto;
  if (name == "dummy") return LoadFormat::Dummy;
  fail_as(ErrorKind::InvalidArgument, "load format '{}': expected auto or dummy", name);
}

ModelConfig load_model_config(const std::string& path) {
  const fs::path p(path);
  const fs::file_status st = existing_status(path, "model config");
  if (fs::is_directory(st)) {
    NC_CHECK_AS(ErrorKind::NotFound, fs::is_regular_file(p / "config.json"),
                "{} has no config.json", path);
    return read_config_json(p / "config.json");
  }
  NC_CHECK_AS(ErrorKind::InvalidArgument, fs::is_regular_file(st), "model config {} is not a file",
              path);
  if (has_gguf_magic(p)) return config_from_gguf(GgufFile::open(path));
  return read_config_json(p);
}

}  // namespace nc

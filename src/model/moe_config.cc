// MoeConfig: validation and the config.json / GGUF readers (model/moe_config.h).
#include "model/moe_config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "formats/gguf.h"
#include "model/model_config.h"

namespace nc {
namespace {

using json = nlohmann::json;

const json* key_of(const json& j, const char* key) {
  auto it = j.find(key);
  return (it == j.end() || it->is_null()) ? nullptr : &*it;
}

std::optional<int64_t> int_key(const json& j, const char* key) {
  const json* v = key_of(j, key);
  if (!v) return std::nullopt;
  NC_CHECK_AS(ErrorKind::InvalidArgument, v->is_number_integer(),
              "config.json: '{}' must be an integer, got {}", key, v->dump());
  return v->get<int64_t>();
}

// The first of `keys` that is set.
std::optional<int64_t> int_key_any(const json& j, std::initializer_list<const char*> keys) {
  for (const char* k : keys)
    if (auto v = int_key(j, k)) return v;
  return std::nullopt;
}

int64_t required_int(const json& j, const char* key, const char* family) {
  auto v = int_key(j, key);
  NC_CHECK_AS(ErrorKind::InvalidArgument, v.has_value(), "config.json: {} needs '{}'", family, key);
  return *v;
}

bool bool_key(const json& j, const char* key, bool dflt) {
  const json* v = key_of(j, key);
  if (!v) return dflt;
  NC_CHECK_AS(ErrorKind::InvalidArgument, v->is_boolean(),
              "config.json: '{}' must be true or false, got {}", key, v->dump());
  return v->get<bool>();
}

std::string string_key(const json& j, const char* key, const std::string& dflt) {
  const json* v = key_of(j, key);
  if (!v) return dflt;
  NC_CHECK_AS(ErrorKind::InvalidArgument, v->is_string(), "config.json: '{}' must be a string",
              key);
  return v->get<std::string>();
}

// The experts' count, top-k and size, common to every family. An expert count of 0 (a dense
// checkpoint under an MoE class) is refused: serve it as the dense family instead.
void read_common(const json& j, const char* family, MoeConfig& m) {
  const int64_t E =
      int_key_any(j, {"num_experts", "n_routed_experts", "num_local_experts"}).value_or(0);
  NC_CHECK_AS(ErrorKind::InvalidArgument, E >= 1 && E <= (1 << 16),
              "config.json: {} needs num_experts (n_routed_experts) in [1, 65536], got {}", family,
              E);
  const int64_t k = required_int(j, "num_experts_per_tok", family);
  NC_CHECK_AS(ErrorKind::InvalidArgument, k >= 1 && k <= E,
              "config.json: num_experts_per_tok {} outside [1, num_experts = {}]", k, E);
  m.routing.num_experts = int(E);
  m.routing.top_k = int(k);
  m.expert_intermediate = required_int(j, "moe_intermediate_size", family);
}

void read_qwen_moe(const json& j, ModelConfig& c) {
  MoeConfig& m = c.moe;
  read_common(j, "Qwen3-MoE", m);
  m.routing.renormalize = bool_key(j, "norm_topk_prob", false);
  std::vector<int64_t> dense;
  if (const json* v = key_of(j, "mlp_only_layers")) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, v->is_array(),
                "config.json: 'mlp_only_layers' must be a list of layer indices");
    for (const json& x : *v) {
      NC_CHECK_AS(ErrorKind::InvalidArgument,
                  x.is_number_integer() && x.get<int64_t>() >= 0 && x.get<int64_t>() < c.num_layers,
                  "config.json: mlp_only_layers entry {} is not a layer index in [0, {})", x.dump(),
                  c.num_layers);
      dense.push_back(x.get<int64_t>());
    }
  }
  const int64_t step = int_key(j, "decoder_sparse_step").value_or(1);
  NC_CHECK_AS(ErrorKind::InvalidArgument, step >= 1,
              "config.json: decoder_sparse_step must be positive, got {}", step);
  m.sparse_layers = qwen_sparse_layers(c.num_layers, step, dense);
  NC_CHECK_AS(ErrorKind::Unsupported,
              int_key(j, "shared_expert_intermediate_size").value_or(0) == 0,
              "config.json: shared_expert_intermediate_size (Qwen2-MoE's gated shared expert) is "
              "not supported");
}

// DeepSeek-V2 ("greedy", "group_limited_greedy": softmax) and V3 ("noaux_tc": sigmoid with the
// correction bias), as transformers' modules route (backend/moe_routing.h).
void read_deepseek_moe(const json& j, ModelConfig& c) {
  MoeConfig& m = c.moe;
  read_common(j, "DeepSeek", m);
  const bool v3 = c.architecture.find("v3") != std::string::npos;
  const std::string method = string_key(j, "topk_method", v3 ? "noaux_tc" : "greedy");
  NC_CHECK_AS(ErrorKind::Unsupported,
              method == "greedy" || method == "group_limited_greedy" || method == "noaux_tc",
              "config.json: topk_method '{}' is not supported (greedy, group_limited_greedy, "
              "noaux_tc)",
              method);
  const std::string scoring =
      string_key(j, "scoring_func", method == "noaux_tc" ? "sigmoid" : "softmax");
  NC_CHECK_AS(ErrorKind::Unsupported, (scoring == "sigmoid") == (method == "noaux_tc"),
              "config.json: scoring_func '{}' with topk_method '{}' is not supported (softmax "
              "with greedy / group_limited_greedy, sigmoid with noaux_tc)",
              scoring, method);
  m.routing.scoring = method == "noaux_tc" ? MoeScoring::Sigmoid : MoeScoring::Softmax;
  if (method != "greedy") {
    m.routing.n_group = int(int_key(j, "n_group").value_or(1));
    m.routing.topk_group = int(int_key(j, "topk_group").value_or(1));
  }
  m.routing.renormalize = bool_key(j, "norm_topk_prob", false);
  if (const json* f = key_of(j, "routed_scaling_factor")) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, f->is_number(),
                "config.json: 'routed_scaling_factor' must be a number, got {}", f->dump());
    m.routing.scaling = float(f->get<double>());
  }
  m.shared_intermediate = int_key(j, "n_shared_experts").value_or(0) * m.expert_intermediate;
  m.sparse_layers =
      deepseek_sparse_layers(c.num_layers, int_key(j, "first_k_dense_replace").value_or(0),
                             int_key(j, "moe_layer_freq").value_or(1));
}

}  // namespace

void MoeConfig::validate(int64_t num_layers) const {
  if (!enabled()) return;
  routing.validate();
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              expert_intermediate >= 1 && expert_intermediate <= (int64_t(1) << 24),
              "model config: moe_intermediate_size must be positive, got {}", expert_intermediate);
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              shared_intermediate >= 0 && shared_intermediate <= (int64_t(1) << 24),
              "model config: the shared experts' size must be >= 0, got {}", shared_intermediate);
  NC_CHECK_AS(ErrorKind::InvalidArgument, int64_t(sparse_layers.size()) == num_layers,
              "model config: {} MoE layer flags for {} layers", sparse_layers.size(), num_layers);
}

std::vector<bool> qwen_sparse_layers(int64_t num_layers, int64_t step,
                                     const std::vector<int64_t>& mlp_only) {
  std::vector<bool> out(static_cast<size_t>(num_layers), false);
  for (int64_t l = 0; l < num_layers; ++l) out[size_t(l)] = (l + 1) % step == 0;
  for (int64_t l : mlp_only)
    if (l >= 0 && l < num_layers) out[size_t(l)] = false;
  return out;
}

std::vector<bool> deepseek_sparse_layers(int64_t num_layers, int64_t first_dense, int64_t freq) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, first_dense >= 0 && freq >= 1,
              "model config: first_k_dense_replace {} must be >= 0 and moe_layer_freq {} >= 1",
              first_dense, freq);
  std::vector<bool> out(static_cast<size_t>(num_layers), false);
  for (int64_t l = 0; l < num_layers; ++l) out[size_t(l)] = l >= first_dense && l % freq == 0;
  return out;
}

void read_moe_hf(const json& j, ModelConfig& c) {
  if (c.architecture == "qwen3_moe") {
    read_qwen_moe(j, c);
  } else if (c.architecture.starts_with("deepseek")) {
    read_deepseek_moe(j, c);
  }
}

void read_moe_gguf(const GgufFile& f, const std::string& arch, ModelConfig& c) {
  const std::string p = arch + ".";
  if (!f.has(p + "expert_count")) return;
  MoeConfig& m = c.moe;
  const int64_t E = f.get_int(p + "expert_count"), k = f.get_int(p + "expert_used_count", 0);
  NC_CHECK_AS(ErrorKind::InvalidArgument, E >= 1 && E <= (1 << 16),
              "GGUF: {}expert_count must be in [1, 65536], got {}", p, E);
  NC_CHECK_AS(ErrorKind::InvalidArgument, k >= 1 && k <= E,
              "GGUF: {}expert_used_count {} outside [1, expert_count = {}]", p, k, E);
  m.routing.num_experts = int(E);
  m.routing.top_k = int(k);
  m.expert_intermediate = f.get_int(p + "expert_feed_forward_length");
  // llama.cpp: gating 2 is sigmoid; Qwen3-MoE always renormalises its top-k.
  const int64_t gating = f.get_int(p + "expert_gating_func", 1);
  NC_CHECK_AS(ErrorKind::Unsupported, gating == 1 || gating == 2,
              "GGUF: {}expert_gating_func {} is not supported (1 softmax, 2 sigmoid)", p, gating);
  m.routing.scoring = gating == 2 ? MoeScoring::Sigmoid : MoeScoring::Softmax;
  m.routing.renormalize = f.get_bool(p + "expert_weights_norm", arch == "qwen3moe");
  const double scale = f.get_float(p + "expert_weights_scale", 1.0);
  m.routing.scaling = float(scale > 0 ? scale : 1.0);  // llama.cpp: 0 = no scaling
  m.routing.n_group = int(f.get_int(p + "expert_group_count", 1));
  m.routing.topk_group = int(f.get_int(p + "expert_group_used_count", m.routing.n_group));
  m.shared_intermediate = f.get_int(p + "expert_shared_count", 0) *
                          f.get_int(p + "expert_shared_feed_forward_length", m.expert_intermediate);
  m.sparse_layers.assign(size_t(c.num_layers), false);
  for (int64_t l = 0; l < c.num_layers; ++l)
    m.sparse_layers[size_t(l)] =
        f.find_tensor(fmt::format("blk.{}.ffn_gate_inp.weight", l)) != nullptr;
}

}  // namespace nc

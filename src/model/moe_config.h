// MoeConfig: the mixture-of-experts part of a ModelConfig (model/model_config.h), shared by
// every MoE family (Qwen3-MoE here; DeepSeek-V2/V3 read the same fields). A layer is either
// dense (the model's ordinary MLP of intermediate_size) or sparse: a router picks top_k of
// num_experts routed experts (SiLU-GLU MLPs of expert_intermediate each) per token
// (backend/moe_routing.h says how), their outputs are summed with the routing weights, and
// shared experts (one SiLU-GLU MLP of shared_intermediate; DeepSeek's n_shared_experts *
// moe_intermediate_size) add their output for every token. num_experts 0: no MoE at all.
//
// Readers: read_moe_hf (config.json: num_experts / n_routed_experts, num_experts_per_tok,
// moe_intermediate_size, norm_topk_prob, decoder_sparse_step, mlp_only_layers,
// first_k_dense_replace, moe_layer_freq, n_group, topk_group, topk_method, scoring_func,
// routed_scaling_factor, n_shared_experts) and read_moe_gguf (llama.cpp's expert_* keys; which
// layers are sparse comes from the tensors present). Each throws nc::Error naming the field.
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "backend/moe_routing.h"

namespace nc {

class GgufFile;
struct ModelConfig;

struct MoeConfig {
  MoeRouting routing;  // routing.num_experts == 0: no MoE layer
  int64_t expert_intermediate = 0;
  int64_t shared_intermediate = 0;  // 0: no shared experts
  std::vector<bool> sparse_layers;  // one flag per layer: MoE (true) or dense MLP

  bool enabled() const { return routing.num_experts > 0; }
  bool is_sparse(int64_t layer) const {
    return enabled() && layer >= 0 && layer < int64_t(sparse_layers.size()) &&
           sparse_layers[size_t(layer)];
  }
  // nc::Error naming the bad field (routing fields, sizes, one flag per layer).
  void validate(int64_t num_layers) const;
};

// Qwen2/3-MoE: layer l is sparse unless listed in mlp_only_layers, and when (l + 1) is a
// multiple of decoder_sparse_step.
std::vector<bool> qwen_sparse_layers(int64_t num_layers, int64_t decoder_sparse_step,
                                     const std::vector<int64_t>& mlp_only_layers);
// DeepSeek: layer l is sparse when l >= first_k_dense_replace and l is a multiple of
// moe_layer_freq (transformers ignores moe_layer_freq; every released checkpoint has 1).
std::vector<bool> deepseek_sparse_layers(int64_t num_layers, int64_t first_k_dense_replace,
                                         int64_t moe_layer_freq);

// Fills c.moe from config.json for c.architecture ("qwen3_moe"; others: the DeepSeek reader
// uses the same fields). Leaves c.moe empty for dense families.
void read_moe_hf(const nlohmann::json& j, ModelConfig& c);
// Fills c.moe from GGUF metadata (arch's expert_* keys) and the file's tensors
// (blk.N.ffn_gate_inp.weight present: layer N is sparse).
void read_moe_gguf(const GgufFile& f, const std::string& arch, ModelConfig& c);

}  // namespace nc

// The checkpoint side of MoE layers: tensor names, the stacking of per-expert tensors into one
// tensor per projection, and the shapes the loader checks.
//
// The decoder reads, for a sparse layer l (prefix model.layers.l.mlp.):
//   gate.weight                         router [E, H]
//   gate.e_score_correction_bias        [E] (sigmoid routing only)
//   experts.gate_up_proj                [E, 2I, H]: per expert, its gate rows then its up rows
//   experts.down_proj                   [E, H, I]
//   shared_experts.gate_up_proj.weight  [2 Is, H] and shared_experts.down_proj.weight [H, Is]
//                                       (shared experts only)
// stack_moe_weights makes these from what checkpoints store: Hugging Face's per-expert tensors
// (experts.{e}.gate_proj.weight [I, H], up_proj, down_proj [H, I]), transformers 5's stacked
// experts.gate_up_proj / experts.down_proj, or llama.cpp's stacked ffn_gate_exps / ffn_up_exps /
// ffn_down_exps (named experts.gate_proj.weight, ... by gguf_moe_part) or ffn_gate_up_exps.
// Raw (quantized) experts stay raw when gate and up share a format (whole rows move); otherwise
// they are dequantized to float32.
#pragma once
#include <cstdint>
#include <vector>

#include "core/host_tensor.h"
#include "model/model_config.h"
#include "model/model_loader.h"

namespace nc {

// HF-style part names (after "model.layers.N.") of the tensors a sparse layer reads.
inline constexpr const char* kMoeRouter = "mlp.gate.weight";
inline constexpr const char* kMoeScoreBias = "mlp.gate.e_score_correction_bias";
inline constexpr const char* kMoeGateUp = "mlp.experts.gate_up_proj";
inline constexpr const char* kMoeDown = "mlp.experts.down_proj";
inline constexpr const char* kMoeSharedGateUp = "mlp.shared_experts.gate_up_proj.weight";
inline constexpr const char* kMoeSharedDown = "mlp.shared_experts.down_proj.weight";

// Rewrites the MoE tensors of every sparse layer of cfg in w into the names above (the parts
// are removed). nc::Error naming the first missing tensor (e.g.
// model.layers.1.mlp.experts.3.up_proj.weight) or a part of the wrong shape.
void stack_moe_weights(const ModelConfig& cfg, WeightMap& w);

// The tensors sparse layer l reads, with their shapes (for expected_weights).
void append_moe_weight_specs(const ModelConfig& cfg, int64_t layer, std::vector<WeightSpec>& out);

// llama.cpp's block tensor part -> HF part for the MoE tensors (ffn_gate_inp -> mlp.gate,
// ffn_gate_exps -> mlp.experts.gate_proj, exp_probs_b -> mlp.gate.e_score_correction,
// ffn_*_shexp -> mlp.shared_experts.*_proj, ...); null for any other part.
const char* gguf_moe_part(const std::string& gguf_part);

}  // namespace nc

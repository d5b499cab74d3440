// DeepSeek-V2/V3 checkpoints (architectures deepseek_v2, deepseek_v3; docs/models.md): the MLA
// tensors a layer must hold, and the multi-token-prediction layers V3 checkpoints append after
// the last decoder layer (model.layers.<num_hidden_layers>...), which this engine does not run.
// The attention itself is model/mla.h; the config fields are ModelConfig::mla.
#pragma once
#include <string>
#include <vector>

#include "core/host_tensor.h"
#include "model/model_config.h"
#include "model/model_loader.h"

namespace nc {

// Appends the tensors of layer `layer` to w, by Hugging Face name, with their shapes: its norms,
// the MLA attention, and the dense MLP or the MoE block (model/moe_weights.h) where it is sparse.
void append_deepseek_layer_specs(const ModelConfig& c, int64_t layer, std::vector<WeightSpec>& w);

// Erases every tensor of a layer index >= c.num_layers (V3's MTP layers) from w and says so on
// stderr once; returns how many tensors went.
int drop_mtp_layers(const ModelConfig& c, WeightMap& w);

// A GGUF from llama.cpp's converter splits each kv_b_proj into k_b_proj [H, Dl, Dn] (the key rows,
// transposed) and v_b_proj [H, Dv, Dl]; this stacks them back into kv_b_proj [H (Dn + Dv), Dl]
// (float32) for every layer that has them. nc::Error naming the tensor when only one is there or
// a shape is off.
void merge_gguf_kv_b(const ModelConfig& c, WeightMap& w);

}  // namespace nc

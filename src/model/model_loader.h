// Loads a model (config + float32 weights with Hugging Face names) from a GGUF file or a
// Hugging Face checkpoint folder (config.json + model.safetensors or sharded with
// model.safetensors.index.json).
#pragma once
#include <string>

#include "model/host_tensor.h"
#include "model/model_config.h"

namespace nc {

struct LoadedModel {
  ModelConfig config;
  WeightMap weights;  // HF names; q/k projections in HF row order (GGUF's permutation undone)
};

// `path` is a .gguf file or a folder. Throws nc::Error for unknown formats, unknown
// architectures, missing tensors and shape mismatches, naming what is wrong.
LoadedModel load_model(const std::string& path);

// Checks that every tensor the decoder needs is present with the right shape.
void check_weights(const ModelConfig& cfg, const WeightMap& w);

}  // namespace nc

// Layer kinds: the distinct attention variants among a model's layers. A kind is full attention
// or a sliding window (ModelConfig::sliding_window, window_left = W - 1), with the model-wide
// scale and soft cap, and its own cos/sin table (Gemma 3's sliding layers have their own rope
// base). Llama-like models have one kind (Mistral's and Phi-3's is windowed when their config
// sets a window); Gemma 2 and 3 have two.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/model_config.h"

namespace nc {

struct LayerKind {
  bool sliding = false;
  int window_left = -1;  // AttentionShape::window_left
  float sm_scale = 1.0f;
  float logits_soft_cap = 0.0f;
  Tensor cos_sin;   // [max_position, head_dim] float32 on the device (the decoder fills it)
  Tensor inv_freq;  // [head_dim / 2] float32 on the device: the table's (streaming window shifts)
};

struct LayerKinds {
  std::vector<LayerKind> kinds;  // in the order of their first layer
  std::vector<int> of_layer;     // kind index of each layer
};

// The kinds of cfg's layers (cos_sin left undefined). Throws nc::Error when the window does not
// fit an int.
LayerKinds layer_kinds(const ModelConfig& cfg);

}  // namespace nc

// A float32 tensor in host memory: what the model readers produce, in Hugging Face's layout
// (a Linear weight is [out_features, in_features]). Backends convert it to their own format.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace nc {

struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// Weights by their Hugging Face names ("model.layers.0.self_attn.q_proj.weight", ...).
using WeightMap = std::map<std::string, HostTensor>;

}  // namespace nc

// A tensor in host memory: what the model readers produce, in Hugging Face's layout (a Linear
// weight is [out_features, in_features]). Backends convert it to their own format.
//
// Float32 values in `data`; or, for a weight kept as the file stores it (dtype f16, bf16 or a GGML
// block type of core/dtype.h), its raw bytes in `raw` with `data` empty: each row of the last
// dimension is dtype_bytes(dtype, shape.back()) bytes.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace nc {

struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  DType dtype = DType::F32;       // F32: `data` holds the values; anything else: `raw` does
  std::vector<uint8_t> raw = {};  // the stored bytes, row after row

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  bool is_raw() const { return dtype != DType::F32; }
};

// Weights by their Hugging Face names ("model.layers.0.self_attn.q_proj.weight", ...).
using WeightMap = std::map<std::string, HostTensor>;

}  // namespace nc

#include "model/layer_kinds.h"

#include <cmath>

#include "core/error.h"

namespace nc {

LayerKinds layer_kinds(const ModelConfig& cfg) {
  LayerKinds out;
  int full = -1, sliding = -1;
  const float scale =
      float(cfg.attn_scale > 0 ? cfg.attn_scale : 1.0 / std::sqrt(double(cfg.head_dim)));
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.sliding_window < (int64_t(1) << 30),
              "model: sliding_window {} is too large", cfg.sliding_window);
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const bool s = cfg.is_sliding(l);
    int& idx = s ? sliding : full;
    if (idx < 0) {
      idx = int(out.kinds.size());
      LayerKind k;
      k.sliding = s;
      k.window_left = s ? int(cfg.sliding_window - 1) : -1;
      k.sm_scale = scale;
      k.logits_soft_cap = float(cfg.attn_soft_cap);
      out.kinds.push_back(k);
    }
    out.of_layer.push_back(idx);
  }
  return out;
}

}  // namespace nc

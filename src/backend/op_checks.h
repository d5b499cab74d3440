// Argument rules that several backends share, checked the same way everywhere (nc::Error naming
// the bad shape). Only shapes: each backend adds its own device, dtype and layout checks.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace nc {

// The widths of the q and k rows of Backend::qkv_split_norm_rope.
struct QkvWidths {
  int64_t q = 0;
  int64_t k = 0;
};

// Backend::qkv_split_norm_rope's shapes: cos_sin [max_pos, D]; q [T, Hq*D]; k, v [T, Hk*D];
// qkv [T, (Hq + 2 Hk) * D]; q_norm, k_norm [D] where defined (T: the number of positions).
QkvWidths check_qkv_split_shapes(const Tensor& qkv, const Tensor& q_norm, const Tensor& k_norm,
                                 const Tensor& positions, const Tensor& cos_sin, int head_dim,
                                 const Tensor& q, const Tensor& k, const Tensor& v);

// Backend::apply_token_bitmask's arguments: logits f32 [R, V], bitmask i32 [R, ceil(V / 32)].
void check_token_bitmask(const Tensor& logits, const Tensor& bitmask);

}  // namespace nc

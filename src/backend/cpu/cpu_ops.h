// CPU ops outside the Backend interface, for tests: the standalone rope that the fused
// qkv_split_norm_rope is checked against (bit for bit).
#pragma once
#include "core/tensor.h"

namespace nc {

// In place, rotate-half (NeoX/HF) style, float32 host tensors. q: [T, Hq*D]; k: [T, Hk*D];
// positions: i32 [T] in [0, max_pos); cos_sin: f32 [max_pos, D] with cos in the first D/2
// columns and sin in the last D/2. nc::Error naming the bad shape or position.
void cpu_rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& cos_sin, int head_dim);

}  // namespace nc

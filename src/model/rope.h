// Rotary position embedding tables, computed as Hugging Face transformers does: inverse
// frequencies in float32 from the base (rope_theta) and the scaling (RopeScaling: linear, Llama-3,
// Phi-3's longrope, YaRN), angles as float32 products, then cos and sin.
//
// A layer kind has its own table: Gemma 3's sliding layers use their own base and no scaling
// (ModelConfig::sliding_rope_theta). Longrope picks one factor list for every position: the long
// factors when the served context (ModelConfig::served_positions(): --max-model-len, else the
// checkpoint's max_position) exceeds the original context, else the short ones (transformers
// switches per forward pass on the sequence length; serving one table keeps a sequence's cached
// keys consistent, and a context within the original one gives transformers' short factors),
// and multiplies cos and sin by the attention factor, which the checkpoint's max_position sets.
#pragma once
#include <cstdint>
#include <vector>

#include "core/host_tensor.h"
#include "model/model_config.h"

namespace nc {

// cos/sin table [max_pos, head_dim] (cos in the first half, sin in the second), float32, for the
// full-attention layers (sliding = false) or the sliding-window layers (sliding = true).
HostTensor rope_cos_sin_table(const ModelConfig& cfg, int64_t max_pos, bool sliding = false);

// The inverse frequencies [head_dim / 2] behind that table: its angle at position p and pair i is
// the float32 product float(p) * inv[i]; cos and sin then carry longrope's or YaRN's attention
// factor, which does not depend on the position.
std::vector<float> rope_inverse_frequencies(const ModelConfig& cfg, bool sliding = false);

// Moving a cached key from one position to another (the streaming window) is a pure rotation by
// the difference of the two positions' angles for every rope this file makes (none, linear,
// llama3, longrope with its one factor list, yarn: the attention factor multiplies both sides).
// nc::Error (Unsupported) naming the rope otherwise: a rope scaling not listed, or MLA's
// interleaved rope on the latent cache (DeepSeek), whose pages this shift does not handle.
void check_rope_position_shift(const ModelConfig& cfg);

// Longrope's cos/sin factor: the configured one, else sqrt(1 + ln(s) / ln(original)) with
// s = max_position / original (1 when s <= 1).
double longrope_attention_factor(const ModelConfig& cfg);

// YaRN's cos/sin factor: the configured one, else mscale(factor, mscale) / mscale(factor,
// mscale_all_dim) when both are set, else mscale(factor, 1), with mscale(s, m) =
// 0.1 m ln(s) + 1 (1 when s <= 1).
double yarn_attention_factor(const RopeScaling& rs);

}  // namespace nc

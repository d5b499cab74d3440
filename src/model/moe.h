// The mixture-of-experts block of a decoder layer (model/moe_config.h), on a Backend:
//
//   logits = in . W_router^T            (float32 on every backend)
//   ids, weights = route(logits)        (Backend::moe_route; backend/moe_routing.h)
//   routed = sum_j weights[j] * expert_ids[j](in)     (Backend::moe_experts)
//   out = routed + shared(in)           (shared experts, a plain SiLU-GLU MLP, when present)
//
// The decoder (model/llama.cc) calls moe_block in place of its dense MLP for the layers the
// config marks sparse. MoeLayerWeights holds the layer's tensors on the device (names:
// model/moe_weights.h); MoeWorkspace the block's activations, grown with the decoder's (so
// the block runs inside the decoder's CUDA graphs: nothing moves once the workspace is sized).
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "backend/backend.h"
#include "model/moe_config.h"

namespace nc {

struct MoeLayerWeights {
  Tensor router;                       // [E, H]
  Tensor score_bias;                   // [E]: sigmoid routing only
  Tensor gate_up, down;                // [E, 2I, H], [E, H, I]
  Tensor shared_gate_up, shared_down;  // [2 Is, H], [H, Is]: shared experts only
};

struct MoeWorkspace {
  int64_t capacity = 0;  // tokens
  int64_t bytes = 0;
  Tensor logits, ids, weights, routed, shared_gate_up, shared_act;
  // Buffers for `tokens` tokens (nothing when cfg has no MoE); frees the old ones first. Also
  // reserves the backend's expert scratch for that many tokens (Backend::reserve_moe), counted
  // in `bytes`.
  void allocate(Backend& backend, const MoeConfig& cfg, int64_t hidden, int64_t tokens);
};

// Layer `layer`'s MoE tensors through `weight` (name, shape) -> device tensor.
using MoeWeightFn = std::function<Tensor(const std::string& name, const Shape& shape)>;
MoeLayerWeights load_moe_layer(const MoeConfig& cfg, int64_t hidden, int64_t layer,
                               const MoeWeightFn& weight);

// out[0, T) = the block applied to in[0, T). in and out [>= T, H] may be the same tensor.
void moe_block(Backend& backend, const MoeConfig& cfg, const MoeLayerWeights& w, MoeWorkspace& ws,
               const Tensor& in, Tensor out, int64_t T);

}  // namespace nc

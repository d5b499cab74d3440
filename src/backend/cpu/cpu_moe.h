// The CPU backend's mixture-of-experts ops (Backend::moe_route, Backend::moe_experts), float32
// activations, expert weights as stored (cpu_matmul's formats).
//
// cpu_moe_experts groups the step's (token, slot) pairs by expert, in token order (a counting
// sort: the token permutation), runs each expert once over its tokens (gate_up matmul, SiLU-GLU,
// down matmul, each a cpu_matmul over that expert's slice of the stacked weights), keeps every
// pair's result apart, and sums each token's results in the order of its slots (un-permutation).
// Each result row is cpu_matmul's fixed-order dot products of the token's own row, so a token's
// output does not depend on which other tokens share the call (batch invariance).
#pragma once
#include "backend/moe_routing.h"
#include "core/tensor.h"

namespace nc {

// Backend::moe_route on host tensors (route_tokens after the shape checks).
void cpu_moe_route(const Tensor& logits, const Tensor& bias, const MoeRouting& r, Tensor ids,
                   Tensor weights);
// Backend::moe_experts on host tensors.
void cpu_moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                     const Tensor& gate_up, const Tensor& down, Tensor out);

}  // namespace nc

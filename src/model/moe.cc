// The MoE block of a decoder layer (model/moe.h).
#include "model/moe.h"

#include <fmt/format.h>

#include "model/moe_weights.h"

namespace nc {

void MoeWorkspace::allocate(Backend& backend, const MoeConfig& cfg, int64_t hidden,
                            int64_t tokens) {
  *this = MoeWorkspace{};
  if (!cfg.enabled()) return;
  const int64_t E = cfg.routing.num_experts, k = cfg.routing.top_k;
  const DType dt = backend.dtype();
  logits = backend.alloc({tokens, E}, DType::F32);
  ids = backend.alloc({tokens, k}, DType::I32);
  weights = backend.alloc({tokens, k}, DType::F32);
  routed = backend.alloc({tokens, hidden}, dt);
  if (cfg.shared_intermediate > 0) {
    shared_gate_up = backend.alloc({tokens, 2 * cfg.shared_intermediate}, dt);
    shared_act = backend.alloc({tokens, cfg.shared_intermediate}, dt);
  }
  capacity = tokens;
  for (const Tensor* t : {&logits, &ids, &weights, &routed, &shared_gate_up, &shared_act})
    if (t->defined()) bytes += int64_t(t->nbytes());
  // The backend's expert scratch for steps of this many tokens, fixed before any graph capture.
  bytes +=
      backend.reserve_moe(int(tokens), int(k), int(E), int(hidden), int(cfg.expert_intermediate));
}

MoeLayerWeights load_moe_layer(const MoeConfig& cfg, int64_t H, int64_t layer,
                               const MoeWeightFn& weight) {
  const int64_t E = cfg.routing.num_experts, I = cfg.expert_intermediate;
  const int64_t S = cfg.shared_intermediate;
  auto name = [&](const char* part) { return fmt::format("model.layers.{}.{}", layer, part); };
  MoeLayerWeights w;
  w.router = weight(name(kMoeRouter), {E, H});
  if (cfg.routing.has_bias()) w.score_bias = weight(name(kMoeScoreBias), {E});
  w.gate_up = weight(name(kMoeGateUp), {E, 2 * I, H});
  w.down = weight(name(kMoeDown), {E, H, I});
  if (S > 0) {
    w.shared_gate_up = weight(name(kMoeSharedGateUp), {2 * S, H});
    w.shared_down = weight(name(kMoeSharedDown), {H, S});
  }
  return w;
}

void moe_block(Backend& backend, const MoeConfig& cfg, const MoeLayerWeights& w, MoeWorkspace& ws,
               const Tensor& in_full, Tensor out_full, int64_t T) {
  const Tensor in = in_full.slice(0, T);
  Tensor out = out_full.slice(0, T);
  Tensor logits = ws.logits.slice(0, T), ids = ws.ids.slice(0, T), weights = ws.weights.slice(0, T),
         routed = ws.routed.slice(0, T);
  backend.linear(in, w.router, Tensor(), logits);  // float32 logits
  backend.moe_route(logits, w.score_bias, cfg.routing, ids, weights);
  backend.moe_experts(in, ids, weights, w.gate_up, w.down, routed);
  if (!w.shared_gate_up.defined()) {
    backend.copy_rows(routed, out);
    return;
  }
  // `in` is read for the last time by the shared gate/up product, so out may alias it.
  Tensor gu = ws.shared_gate_up.slice(0, T), act = ws.shared_act.slice(0, T);
  backend.linear(in, w.shared_gate_up, Tensor(), gu);
  backend.silu_and_mul(gu, act);
  backend.linear(act, w.shared_down, Tensor(), out);
  backend.add(out, routed);
}

}  // namespace nc

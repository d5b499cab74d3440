// MoE tensor names, stacking and shapes (model/moe_weights.h).
#include "model/moe_weights.h"

#include <map>

#include "core/error.h"
#include "core/tensor.h"
#include "formats/gguf.h"

namespace nc {
namespace {

// `count` rows of t, from row `first`, t seen as [rows, cols] with cols its last dimension.
struct Rows {
  const HostTensor* t;
  int64_t first, count;
};

// The rows in order, as one tensor of `shape`: raw bytes where every part has one raw dtype,
// else float32 (parts dequantized).
HostTensor gather(const std::vector<Rows>& parts, const Shape& shape) {
  const int64_t cols = shape.back();
  const DType dt = parts.front().t->dtype;
  bool same_raw = parts.front().t->is_raw();
  for (const Rows& p : parts) same_raw = same_raw && p.t->is_raw() && p.t->dtype == dt;
  HostTensor out{shape, {}};
  if (same_raw) {
    out.dtype = dt;
    const size_t row = dtype_bytes(dt, cols);
    for (const Rows& p : parts) {
      const auto b = p.t->raw.begin() + p.first * int64_t(row);
      out.raw.insert(out.raw.end(), b, b + p.count * int64_t(row));
    }
    return out;
  }
  std::map<const HostTensor*, HostTensor> f32;  // each raw part dequantized once
  out.data.reserve(size_t(out.numel()));
  for (const Rows& p : parts) {
    const HostTensor* src = p.t;
    if (src->is_raw()) {
      auto it = f32.find(src);
      if (it == f32.end()) it = f32.emplace(src, dequantized(*src)).first;
      src = &it->second;
    }
    const auto b = src->data.begin() + p.first * cols;
    out.data.insert(out.data.end(), b, b + p.count * cols);
  }
  return out;
}

class LayerStacker {
 public:
  LayerStacker(const ModelConfig& c, int64_t layer, WeightMap& w)
      : w_(w),
        p_(fmt::format("model.layers.{}.", layer)),
        E_(c.moe.routing.num_experts),
        I_(c.moe.expert_intermediate),
        H_(c.hidden_size) {}

  void run(int64_t shared) {
    rename("mlp.gate.e_score_correction.bias", kMoeScoreBias);  // GGUF's exp_probs_b.bias
    gate_up();
    down();
    if (shared > 0) {
      const HostTensor& g = need("mlp.shared_experts.gate_proj.weight", {shared, H_});
      const HostTensor& u = need("mlp.shared_experts.up_proj.weight", {shared, H_});
      put(kMoeSharedGateUp, gather({{&g, 0, shared}, {&u, 0, shared}}, {2 * shared, H_}));
      drop({"mlp.shared_experts.gate_proj.weight", "mlp.shared_experts.up_proj.weight"});
    }
  }

 private:
  bool has(const std::string& part) const { return w_.count(p_ + part) > 0; }
  void rename(const std::string& from, const std::string& to) {
    auto it = w_.find(p_ + from);
    if (it == w_.end()) return;
    HostTensor t = std::move(it->second);
    w_.erase(it);
    w_[p_ + to] = std::move(t);
  }
  const HostTensor& need(const std::string& part, const Shape& shape) const {
    auto it = w_.find(p_ + part);
    NC_CHECK_AS(ErrorKind::InvalidArgument, it != w_.end(),
                "missing tensor {}{} (expected shape {})", p_, part, shape_str(shape));
    NC_CHECK_AS(ErrorKind::InvalidArgument, it->second.shape == shape,
                "tensor {}{} has shape {}, expected {}", p_, part, shape_str(it->second.shape),
                shape_str(shape));
    return it->second;
  }
  void put(const char* part, HostTensor t) { w_[p_ + part] = std::move(t); }
  void drop(const std::vector<std::string>& parts) {
    for (const std::string& s : parts) w_.erase(p_ + s);
  }
  std::string expert(int64_t e, const char* proj) const {
    return fmt::format("mlp.experts.{}.{}.weight", e, proj);
  }

  void gate_up() {
    if (has(kMoeGateUp)) return;
    rename("mlp.experts.gate_up_proj.weight", kMoeGateUp);  // GGUF's ffn_gate_up_exps
    if (has(kMoeGateUp)) return;
    std::vector<Rows> rows;
    std::vector<std::string> parts;
    if (has("mlp.experts.gate_proj.weight")) {  // GGUF's ffn_gate_exps / ffn_up_exps
      const HostTensor& g = need("mlp.experts.gate_proj.weight", {E_, I_, H_});
      const HostTensor& u = need("mlp.experts.up_proj.weight", {E_, I_, H_});
      for (int64_t e = 0; e < E_; ++e)
        rows.insert(rows.end(), {{&g, e * I_, I_}, {&u, e * I_, I_}});
      parts = {"mlp.experts.gate_proj.weight", "mlp.experts.up_proj.weight"};
    } else {  // one tensor per expert and projection
      for (int64_t e = 0; e < E_; ++e) {
        for (const char* proj : {"gate_proj", "up_proj"}) {
          rows.push_back({&need(expert(e, proj), {I_, H_}), 0, I_});
          parts.push_back(expert(e, proj));
        }
      }
    }
    put(kMoeGateUp, gather(rows, {E_, 2 * I_, H_}));
    drop(parts);
  }

  void down() {
    if (has(kMoeDown)) return;
    rename("mlp.experts.down_proj.weight", kMoeDown);  // GGUF's ffn_down_exps
    if (has(kMoeDown)) return;
    std::vector<Rows> rows;
    std::vector<std::string> parts;
    for (int64_t e = 0; e < E_; ++e) {
      rows.push_back({&need(expert(e, "down_proj"), {H_, I_}), 0, H_});
      parts.push_back(expert(e, "down_proj"));
    }
    put(kMoeDown, gather(rows, {E_, H_, I_}));
    drop(parts);
  }

  WeightMap& w_;
  std::string p_;
  int64_t E_, I_, H_;
};

}  // namespace

void stack_moe_weights(const ModelConfig& cfg, WeightMap& w) {
  for (int64_t l = 0; l < cfg.num_layers; ++l)
    if (cfg.moe.is_sparse(l)) LayerStacker(cfg, l, w).run(cfg.moe.shared_intermediate);
}

void append_moe_weight_specs(const ModelConfig& c, int64_t l, std::vector<WeightSpec>& out) {
  const std::string p = fmt::format("model.layers.{}.", l);
  const int64_t E = c.moe.routing.num_experts, I = c.moe.expert_intermediate, H = c.hidden_size;
  const int64_t S = c.moe.shared_intermediate;
  out.push_back({p + kMoeRouter, {E, H}});
  if (c.moe.routing.has_bias()) out.push_back({p + kMoeScoreBias, {E}});
  out.push_back({p + kMoeGateUp, {E, 2 * I, H}});
  out.push_back({p + kMoeDown, {E, H, I}});
  if (S > 0) {
    out.push_back({p + kMoeSharedGateUp, {2 * S, H}});
    out.push_back({p + kMoeSharedDown, {H, S}});
  }
}

const char* gguf_moe_part(const std::string& part) {
  static const std::pair<const char*, const char*> kParts[] = {
      {"ffn_gate_inp", "mlp.gate"},
      {"exp_probs_b", "mlp.gate.e_score_correction"},
      {"ffn_gate_exps", "mlp.experts.gate_proj"},
      {"ffn_up_exps", "mlp.experts.up_proj"},
      {"ffn_down_exps", "mlp.experts.down_proj"},
      {"ffn_gate_up_exps", "mlp.experts.gate_up_proj"},
      {"ffn_gate_shexp", "mlp.shared_experts.gate_proj"},
      {"ffn_up_shexp", "mlp.shared_experts.up_proj"},
      {"ffn_down_shexp", "mlp.shared_experts.down_proj"}};
  for (const auto& [g, h] : kParts)
    if (part == g) return h;
  return nullptr;
}

}  // namespace nc

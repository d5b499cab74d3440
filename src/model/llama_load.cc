// LlamaModel's weights (model/llama.h): checkpoint tensors by Hugging Face name (fused q/k/v
// and gate/up stacked here unless the checkpoint stores them fused, as Phi-3's does) or seeded
// random ones; the layer kinds' rope tables.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/random_init.h"
#include "formats/gguf.h"
#include "model/fp8_load.h"
#include "model/llama.h"

namespace nc {
namespace {

std::string layer_name(int64_t i, const char* rest) {
  return fmt::format("model.layers.{}.{}", i, rest);
}

// Takes a weight by name, checking its shape; the error names the tensor and both shapes.
const HostTensor& require(const WeightMap& w, const std::string& name, const Shape& shape) {
  auto it = w.find(name);
  NC_CHECK_AS(ErrorKind::InvalidArgument, it != w.end(), "model: missing tensor '{}'", name);
  NC_CHECK_AS(ErrorKind::InvalidArgument, it->second.shape == shape,
              "model: tensor '{}' has shape {}, expected {}", name, shape_str(it->second.shape),
              shape_str(shape));
  return it->second;
}

// The parts' rows stacked in order, as one tensor of `shape`. Parts of one dtype are
// concatenated as they are stored (raw rows stay raw); parts of different dtypes (a Q4_K_M file
// mixes Q4_K and Q6_K rows) cannot share one block format, so they are all dequantized to
// float32 (docs/benchmarks.md, "CPU").
HostTensor stack_rows(const std::vector<const HostTensor*>& parts, const Shape& shape) {
  const DType dt = parts.front()->dtype;
  const bool same =
      std::all_of(parts.begin(), parts.end(), [&](const HostTensor* p) { return p->dtype == dt; });
  HostTensor t{shape, {}};
  if (same && dt != DType::F32) {
    t.dtype = dt;
    for (const HostTensor* p : parts) t.raw.insert(t.raw.end(), p->raw.begin(), p->raw.end());
    return t;
  }
  t.data.reserve(size_t(t.numel()));
  for (const HostTensor* p : parts) {
    if (!p->is_raw()) {
      t.data.insert(t.data.end(), p->data.begin(), p->data.end());
      continue;
    }
    const HostTensor f = dequantized(*p);
    t.data.insert(t.data.end(), f.data.begin(), f.data.end());
  }
  return t;
}

// The parts of a fused tensor (load() names them: one GEMM instead of two or three) that the
// checkpoint stores apart, as (name, rows) in stacking order; empty when `name` is not fused or
// is stored fused (Phi-3). A part has the fused shape with its own row count.
std::vector<std::pair<std::string, int64_t>> fused_parts(const ModelConfig& cfg, const WeightMap& w,
                                                         const std::string& name) {
  const int64_t D = cfg.head_dim, I = cfg.intermediate_size;
  const int64_t q_rows = cfg.num_heads * D, kv_rows = cfg.num_kv_heads * D;
  struct Fused {
    const char* suffix;
    std::vector<std::pair<const char*, int64_t>> parts;
  };
  const Fused fused[] = {
      {".mlp.gate_up_proj.weight", {{".mlp.gate_proj.weight", I}, {".mlp.up_proj.weight", I}}},
      {".self_attn.qkv_proj.weight",
       {{".self_attn.q_proj.weight", q_rows},
        {".self_attn.k_proj.weight", kv_rows},
        {".self_attn.v_proj.weight", kv_rows}}},
      {".self_attn.qkv_proj.bias",
       {{".self_attn.q_proj.bias", q_rows},
        {".self_attn.k_proj.bias", kv_rows},
        {".self_attn.v_proj.bias", kv_rows}}},
  };
  std::vector<std::pair<std::string, int64_t>> out;
  for (const Fused& f : fused) {
    if (!name.ends_with(f.suffix) || w.count(name)) continue;  // stored fused: as it is
    const std::string prefix = name.substr(0, name.size() - std::strlen(f.suffix));
    for (const auto& [suffix, rows] : f.parts) out.emplace_back(prefix + suffix, rows);
  }
  return out;
}

// An F8_E4M3 tensor that is not one of the FP8 linears (fp8_load.h; an FP8 checkpoint's LM head,
// MLA projections or router): its values, dequantised with its scales, kept in the backend's
// dtype like any other weight. Never its raw codes: nothing reads those without the scales.
HostTensor dequantized_fp8(const WeightMap& w, const std::string& name, const Shape& shape) {
  NC_CHECK_AS(ErrorKind::Unsupported, shape.size() == 2,
              "model: tensor '{}' of shape {} is stored as F8_E4M3, read only for 2-D weights",
              name, shape_str(shape));
  return dequantize_fp8_weight(fp8_weight_from(w, name, shape));
}

}  // namespace

LlamaModel::LlamaModel(const ModelConfig& config, const WeightMap& w, Backend& backend)
    : cfg_(config), backend_(backend) {
  cfg_.validate();
  load(
      [&](const std::string& name, const Shape& shape) {
        const auto parts = fused_parts(cfg_, w, name);
        if (is_fp8_linear_name(name)) return upload_linear(w, name, shape, parts);
        if (parts.empty()) {
          const HostTensor& t = require(w, name, shape);
          // Two returns, not a ?: (which would copy t, a whole embedding, into a temporary).
          if (t.dtype == DType::F8E4M3) return upload_weight(dequantized_fp8(w, name, shape));
          return upload_weight(t);
        }
        std::vector<const HostTensor*> ps;
        for (const auto& [part, rows] : parts) {
          Shape part_shape = shape;
          part_shape[0] = rows;
          ps.push_back(&require(w, part, part_shape));
          NC_CHECK_AS(ErrorKind::Unsupported, ps.back()->dtype != DType::F8E4M3,
                      "model: tensor '{}' is stored as F8_E4M3, read only for 2-D weights", part);
        }
        return upload_weight(stack_rows(ps, shape));
      },
      w.count("lm_head.weight") || !cfg_.tie_embeddings);
}

// A linear layer's weight: FP8 (model/fp8_load.h) under quantization "fp8", else as stored (an
// FP8-stored weight dequantised to float32 first).
Tensor LlamaModel::upload_linear(const WeightMap& w, const std::string& name, const Shape& shape,
                                 const std::vector<std::pair<std::string, int64_t>>& parts) {
  std::vector<Fp8Weight> fp8;
  std::vector<HostTensor> kept;  // quantization "none": each part as stored, or dequantised
  const bool quantize = cfg_.quantization == "fp8";
  for (size_t i = 0; i < std::max<size_t>(parts.size(), 1); ++i) {
    const std::string part = parts.empty() ? name : parts[i].first;
    Shape part_shape = shape;
    if (!parts.empty()) part_shape[0] = parts[i].second;
    const HostTensor& t = require(w, part, part_shape);
    if (quantize)
      fp8.push_back(fp8_weight_from(w, part, part_shape));
    else
      kept.push_back(t.dtype == DType::F8E4M3
                         ? dequantize_fp8_weight(fp8_weight_from(w, part, part_shape))
                         : t);
  }
  if (quantize) return backend_.upload_fp8_linear(stack_fp8_weights(fp8));
  if (kept.size() == 1) return upload_weight(kept.front());
  std::vector<const HostTensor*> ps;
  for (const HostTensor& t : kept) ps.push_back(&t);
  return upload_weight(stack_rows(ps, shape));
}

Tensor LlamaModel::upload_weight(const HostTensor& t) {
  if (!t.is_raw() || backend_.keeps_weight_dtype(t.dtype)) return backend_.upload(t);
  return backend_.upload(dequantized(t));
}

LlamaModel::LlamaModel(const ModelConfig& config, const RandomWeights& random, Backend& backend)
    : cfg_(config), backend_(backend) {
  cfg_.validate();
  const double H = double(cfg_.hidden_size);
  load(
      [&](const std::string& name, const Shape& shape) {
        Tensor t = backend_.alloc(shape, backend_.dtype());
        const uint64_t seed = tensor_seed(random.seed, name);
        float a = 0;  // uniform in [-a, a]: standard deviation a / sqrt(3)
        if (name.ends_with("norm.weight")) {
          backend_.fill_uniform(t, seed, 1.0f, 1.0f);
          return t;
        } else if (name.ends_with(".bias")) {
          a = 0.02f;
        } else if (name == "model.embed_tokens.weight" || name == "lm_head.weight") {
          a = float(std::sqrt(3.0 / H));
        } else {  // a Linear [out, in], or stacked experts [E, out, in]
          a = float(std::sqrt(3.0 / double(shape.back())));
        }
        backend_.fill_uniform(t, seed, -a, a);
        if (name == "model.embed_tokens.weight" && cfg_.vocab_count > 0) {  // its zero row
          Tensor last = t.slice(shape[0] - 1, shape[0]);
          const std::vector<uint8_t> zeros(last.nbytes(), 0);
          backend_.copy_from_host(last, zeros.data());
        }
        if (cfg_.quantization == "fp8" && is_fp8_linear_name(name))  // the same values, quantised
          return backend_.upload_fp8_linear(
              quantize_fp8_weight(HostTensor{shape, backend_.to_host_f32(t)}));
        return t;
      },
      !cfg_.tie_embeddings || cfg_.vocab_count > 0);  // a vocabulary shard's head: no zero row
}

void LlamaModel::load(const WeightFn& weight, bool has_lm_head) {
  const int64_t H = cfg_.hidden_size;
  const int64_t I = cfg_.intermediate_size, V = cfg_.vocab_size;
  auto up = [&](const std::string& name, const Shape& shape) {
    Tensor t = weight(name, shape);
    weight_bytes_ +=
        t.dtype() == DType::F8E4M3 ? fp8_packed_bytes(t.dim(0), t.dim(1)) : int64_t(t.nbytes());
    return t;
  };
  // A vocabulary shard's embedding table has one more row, all zeros: the ids it does not hold
  // look that row up (upload_token_ids), so the ranks' lookups sum to the whole table's.
  const int64_t Vs = cfg_.vocab_count > 0 ? cfg_.vocab_count : V;
  embed_ = up("model.embed_tokens.weight", {cfg_.vocab_count > 0 ? Vs + 1 : V, H});
  final_norm_ = up("model.norm.weight", {H});
  lm_head_ = has_lm_head ? up("lm_head.weight", {Vs, H}) : embed_;
  for (int64_t i = 0; i < cfg_.num_layers; ++i) {
    Layer L;
    auto lw = [&](const char* rest, const Shape& shape) { return up(layer_name(i, rest), shape); };
    L.input_norm = lw("input_layernorm.weight", {H});
    if (cfg_.sandwich_norms) {
      L.attn_out_norm = lw("post_attention_layernorm.weight", {H});
      L.post_norm = lw("pre_feedforward_layernorm.weight", {H});
      L.mlp_out_norm = lw("post_feedforward_layernorm.weight", {H});
    } else {
      L.post_norm = lw("post_attention_layernorm.weight", {H});
    }
    if (cfg_.mla.enabled()) {
      L.mla = load_mla_layer(cfg_, backend_, weight, i, &weight_bytes_);
    } else {
      load_attention(L, i, up);
    }
    if (cfg_.moe.is_sparse(i)) {
      L.moe = load_moe_layer(cfg_.moe, H, i, up);
    } else {
      L.gate_up = lw("mlp.gate_up_proj.weight", {2 * I, H});
      L.down = lw("mlp.down_proj.weight", {H, I});
    }
    layers_.push_back(std::move(L));
  }
  load_rope_tables();
}

void LlamaModel::load_attention(Layer& L, int64_t i, const WeightFn& up) {
  const int64_t H = cfg_.hidden_size, D = cfg_.head_dim, Hq = cfg_.num_heads,
                Hk = cfg_.num_kv_heads;
  auto lw = [&](const char* rest, const Shape& shape) { return up(layer_name(i, rest), shape); };
  {
    // q, k and v projections stacked (the random init draws it like any [out, H] Linear).
    L.qkv = lw("self_attn.qkv_proj.weight", {(Hq + 2 * Hk) * D, H});
    if (cfg_.attention_bias) L.qkv_bias = lw("self_attn.qkv_proj.bias", {(Hq + 2 * Hk) * D});
    if (cfg_.qk_norm) {
      L.q_norm = lw("self_attn.q_norm.weight", {D});
      L.k_norm = lw("self_attn.k_norm.weight", {D});
    }
    L.o_proj = lw("self_attn.o_proj.weight", {H, Hq * D});
    if (cfg_.o_proj_bias) L.o_bias = lw("self_attn.o_proj.bias", {H});
  }
}

void LlamaModel::load_rope_tables() {
  kinds_ = layer_kinds(cfg_);
  Tensor shared, shared_inv;  // kinds without a rope of their own share the full layers' table
  for (LayerKind& k : kinds_.kinds) {
    const bool own = k.sliding && cfg_.sliding_rope_theta > 0;
    if (!own && shared.defined()) {
      k.cos_sin = shared;
      k.inv_freq = shared_inv;
      continue;
    }
    if (!cfg_.mla.enabled()) {  // the streaming window's key shifts (llama_kv_shift.cc)
      const std::vector<float> inv = rope_inverse_frequencies(cfg_, k.sliding);
      k.inv_freq = backend_.alloc({int64_t(inv.size())}, DType::F32);
      backend_.copy_from_host(k.inv_freq, inv.data());
      if (!own) shared_inv = k.inv_freq;
    }
    // float32 on every backend (upload() would convert to the backend's dtype, and bf16 cos/sin
    // visibly shifts long-range attention).
    const HostTensor table = rope_cos_sin_table(cfg_, cfg_.served_positions(), k.sliding);
    k.cos_sin = backend_.alloc(table.shape, DType::F32);
    backend_.copy_from_host(k.cos_sin, table.data.data());
    weight_bytes_ += int64_t(k.cos_sin.nbytes());
    if (!own) shared = k.cos_sin;
  }
}

std::string LlamaModel::linear_weight_dtype() const {
  for (const Layer& L : layers_)
    if (L.o_proj.defined()) return std::string(dtype_name(L.o_proj.dtype()));
  return {};
}

}  // namespace nc

#include "model/llama.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace nc {

namespace {

std::string layer_name(int64_t i, const char* rest) {
  return fmt::format("model.layers.{}.{}", i, rest);
}

// Takes a weight by name, checking its shape; the error names the tensor and both shapes.
const HostTensor& require(const WeightMap& w, const std::string& name, const Shape& shape) {
  auto it = w.find(name);
  NC_CHECK(it != w.end(), "model: missing tensor '{}'", name);
  NC_CHECK(it->second.shape == shape, "model: tensor '{}' has shape {}, expected {}", name,
           shape_str(it->second.shape), shape_str(shape));
  return it->second;
}

// Inverse frequencies as Hugging Face computes them (float32), with rope scaling applied.
std::vector<float> inverse_frequencies(const ModelConfig& cfg) {
  const int64_t D = cfg.head_dim;
  std::vector<float> inv(D / 2);
  for (int64_t i = 0; i < D / 2; ++i)
    inv[i] = 1.0f / std::pow(float(cfg.rope_theta), float(2 * i) / float(D));
  const RopeScaling& rs = cfg.rope_scaling;
  if (rs.type == "linear") {
    for (float& f : inv) f = f / float(rs.factor);
  } else if (rs.type == "llama3") {
    const double old_len = double(rs.original_max_position);
    const double low_wavelen = old_len / rs.low_freq_factor,
                 high_wavelen = old_len / rs.high_freq_factor;
    for (float& f : inv) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f = float(f / rs.factor);
      } else if (wavelen >= high_wavelen) {  // between the two: interpolate
        const double smooth =
            (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = float((1.0 - smooth) * f / rs.factor + smooth * f);
      }
    }
  } else {
    NC_CHECK(rs.type == "none" || rs.type == "default", "model: unsupported rope scaling '{}'",
             rs.type);
  }
  return inv;
}

}  // namespace

HostTensor rope_cos_sin_table(const ModelConfig& cfg, int64_t max_pos) {
  const int64_t D = cfg.head_dim, half = D / 2;
  const std::vector<float> inv = inverse_frequencies(cfg);
  HostTensor t{{max_pos, D}, std::vector<float>(max_pos * D)};
  for (int64_t p = 0; p < max_pos; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const float angle = float(p) * inv[i];  // float32 product, as HF
      t.data[p * D + i] = float(std::cos(double(angle)));
      t.data[p * D + half + i] = float(std::sin(double(angle)));
    }
  }
  return t;
}

LlamaModel::LlamaModel(const ModelConfig& config, const WeightMap& w, Backend& backend)
    : cfg_(config), backend_(backend) {
  cfg_.validate();
  const int64_t H = cfg_.hidden_size, D = cfg_.head_dim, Hq = cfg_.num_heads,
                Hk = cfg_.num_kv_heads;
  const int64_t I = cfg_.intermediate_size, V = cfg_.vocab_size;
  auto up = [&](const std::string& name, const Shape& shape) {
    return backend_.upload(require(w, name, shape));
  };
  embed_ = up("model.embed_tokens.weight", {V, H});
  final_norm_ = up("model.norm.weight", {H});
  if (w.count("lm_head.weight") || !cfg_.tie_embeddings) {
    lm_head_ = up("lm_head.weight", {V, H});
  } else {
    lm_head_ = embed_;
  }
  for (int64_t i = 0; i < cfg_.num_layers; ++i) {
    Layer L;
    auto lw = [&](const char* rest, const Shape& shape) { return up(layer_name(i, rest), shape); };
    L.input_norm = lw("input_layernorm.weight", {H});
    L.post_norm = lw("post_attention_layernorm.weight", {H});
    L.q = lw("self_attn.q_proj.weight", {Hq * D, H});
    L.k = lw("self_attn.k_proj.weight", {Hk * D, H});
    L.v = lw("self_attn.v_proj.weight", {Hk * D, H});
    if (cfg_.attention_bias) {
      L.q_bias = lw("self_attn.q_proj.bias", {Hq * D});
      L.k_bias = lw("self_attn.k_proj.bias", {Hk * D});
      L.v_bias = lw("self_attn.v_proj.bias", {Hk * D});
    }
    if (cfg_.qk_norm) {
      L.q_norm = lw("self_attn.q_norm.weight", {D});
      L.k_norm = lw("self_attn.k_norm.weight", {D});
    }
    L.o_proj = lw("self_attn.o_proj.weight", {H, Hq * D});
    if (cfg_.o_proj_bias) L.o_bias = lw("self_attn.o_proj.bias", {H});
    HostTensor gate_up{{2 * I, H}, {}};
    gate_up.data = require(w, layer_name(i, "mlp.gate_proj.weight"), {I, H}).data;
    const auto& upw = require(w, layer_name(i, "mlp.up_proj.weight"), {I, H}).data;
    gate_up.data.insert(gate_up.data.end(), upw.begin(), upw.end());
    L.gate_up = backend_.upload(gate_up);
    L.down = lw("mlp.down_proj.weight", {H, I});
    layers_.push_back(std::move(L));
  }
  // float32 on every backend (upload() would convert to the backend's dtype, and bf16 cos/sin
  // visibly shifts long-range attention).
  const HostTensor table = rope_cos_sin_table(cfg_, cfg_.max_position);
  cos_sin_ = backend_.alloc(table.shape, DType::F32);
  backend_.copy_from_host(cos_sin_, table.data.data());
}

KVCache LlamaModel::make_kv_cache(int num_pages, int page_size, KVLayout layout) {
  NC_CHECK(page_size >= 1 && page_size <= 256, "kv cache: page size {} outside 1..256", page_size);
  NC_CHECK(num_pages >= 1, "kv cache: needs at least one page, got {}", num_pages);
  KVCache kv;
  kv.shape = KVCacheShape{int(cfg_.num_layers),   num_pages,          page_size,
                          int(cfg_.num_kv_heads), int(cfg_.head_dim), layout};
  const Shape shape = layout == KVLayout::NHD
                          ? Shape{num_pages, 2, page_size, cfg_.num_kv_heads, cfg_.head_dim}
                          : Shape{num_pages, 2, cfg_.num_kv_heads, page_size, cfg_.head_dim};
  for (int64_t l = 0; l < cfg_.num_layers; ++l)
    kv.layers.push_back(backend_.alloc(shape, backend_.dtype()));
  return kv;
}

int64_t LlamaModel::kv_bytes_per_page(int page_size) const {
  return cfg_.num_layers * 2 * int64_t(page_size) * cfg_.num_kv_heads * cfg_.head_dim *
         int64_t(dtype_size(backend_.dtype()));
}

void LlamaModel::ensure_workspace(int64_t T, int64_t R) {
  const int64_t need = std::max(T, R);
  if (need <= ws_.capacity) return;
  const int64_t cap = std::max<int64_t>(need, 2 * ws_.capacity);
  const int64_t H = cfg_.hidden_size, D = cfg_.head_dim;
  const DType dt = backend_.dtype();
  ws_.ids = backend_.alloc({cap}, DType::I32);
  ws_.positions = backend_.alloc({cap}, DType::I32);
  ws_.rows = backend_.alloc({cap}, DType::I32);
  ws_.hidden = backend_.alloc({cap, H}, dt);
  ws_.residual = backend_.alloc({cap, H}, dt);
  ws_.q = backend_.alloc({cap, cfg_.num_heads * D}, dt);
  ws_.k = backend_.alloc({cap, cfg_.num_kv_heads * D}, dt);
  ws_.v = backend_.alloc({cap, cfg_.num_kv_heads * D}, dt);
  ws_.attn_out = backend_.alloc({cap, cfg_.num_heads * D}, dt);
  ws_.gate_up = backend_.alloc({cap, 2 * cfg_.intermediate_size}, dt);
  ws_.act = backend_.alloc({cap, cfg_.intermediate_size}, dt);
  ws_.last_hidden = backend_.alloc({cap, H}, dt);
  ws_.logits = backend_.alloc({cap, cfg_.vocab_size}, DType::F32);  // no bf16 rounding of logits
  ws_.capacity = cap;
}

void LlamaModel::validate_input(const ForwardInput& in, const KVCache& kv) const {
  const int64_t T = int64_t(in.token_ids.size());
  NC_CHECK(T > 0, "forward: no tokens");
  NC_CHECK(int64_t(in.positions.size()) == T, "forward: {} positions for {} tokens",
           in.positions.size(), T);
  NC_CHECK(in.attention.num_tokens == T, "forward: attention plan covers {} tokens, input has {}",
           in.attention.num_tokens, T);
  NC_CHECK(int64_t(kv.layers.size()) == cfg_.num_layers,
           "forward: kv cache has {} layers, model {}", kv.layers.size(), cfg_.num_layers);
  for (int32_t id : in.token_ids)
    NC_CHECK(id >= 0 && id < cfg_.vocab_size, "forward: token id {} outside the vocabulary [0, {})",
             id, cfg_.vocab_size);
  for (int32_t p : in.positions)
    NC_CHECK(p >= 0 && p < cfg_.max_position, "forward: position {} outside [0, {})", p,
             cfg_.max_position);
  for (int32_t r : in.logit_rows)
    NC_CHECK(r >= 0 && r < T, "forward: logit row {} outside [0, {})", r, T);
}

void LlamaModel::attention_block(const Layer& L, const AttentionPlan& plan, Tensor kv_pages,
                                 int64_t T) {
  const int64_t D = cfg_.head_dim;
  Tensor x = ws_.hidden.slice(0, T), q = ws_.q.slice(0, T), k = ws_.k.slice(0, T),
         v = ws_.v.slice(0, T);
  backend_.linear(x, L.q, L.q_bias, q);
  backend_.linear(x, L.k, L.k_bias, k);
  backend_.linear(x, L.v, L.v_bias, v);
  if (cfg_.qk_norm) {
    Tensor qh = q.view({T * cfg_.num_heads, D}), kh = k.view({T * cfg_.num_kv_heads, D});
    backend_.rmsnorm(qh, L.q_norm, float(cfg_.rms_eps), qh);
    backend_.rmsnorm(kh, L.k_norm, float(cfg_.rms_eps), kh);
  }
  backend_.rope(q, k, ws_.positions.slice(0, T), cos_sin_, int(D));
  Tensor attn = ws_.attn_out.slice(0, T);
  backend_.attention(plan, q, k, v, kv_pages, attn);
  backend_.linear(attn, L.o_proj, L.o_bias, x);
}

void LlamaModel::mlp_block(const Layer& L, int64_t T) {
  Tensor x = ws_.hidden.slice(0, T), gu = ws_.gate_up.slice(0, T), act = ws_.act.slice(0, T);
  backend_.linear(x, L.gate_up, Tensor(), gu);
  backend_.silu_and_mul(gu, act);
  backend_.linear(act, L.down, Tensor(), x);
}

std::vector<float> LlamaModel::forward(const ForwardInput& in, KVCache& kv) {
  validate_input(in, kv);
  const int64_t T = int64_t(in.token_ids.size()), R = int64_t(in.logit_rows.size());
  ensure_workspace(T, R);
  AttentionShape shape{int(cfg_.num_heads), int(cfg_.num_kv_heads), int(cfg_.head_dim),
                       float(1.0 / std::sqrt(double(cfg_.head_dim))), kv.shape};
  std::unique_ptr<AttentionPlan> plan = backend_.plan_attention(in.attention, shape);

  backend_.copy_from_host(ws_.ids.slice(0, T), in.token_ids.data());
  backend_.copy_from_host(ws_.positions.slice(0, T), in.positions.data());
  Tensor hidden = ws_.hidden.slice(0, T), residual = ws_.residual.slice(0, T);
  backend_.embedding(embed_, ws_.ids.slice(0, T), hidden);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    if (l == 0) {
      backend_.copy_rows(hidden, residual);  // residual stream starts at the embeddings
      backend_.rmsnorm(residual, L.input_norm, float(cfg_.rms_eps), hidden);
    } else {
      backend_.add_rmsnorm(hidden, residual, L.input_norm, float(cfg_.rms_eps));
    }
    attention_block(L, *plan, kv.layers[l], T);
    backend_.add_rmsnorm(hidden, residual, L.post_norm, float(cfg_.rms_eps));
    mlp_block(L, T);
  }
  backend_.add_rmsnorm(hidden, residual, final_norm_, float(cfg_.rms_eps));
  if (R == 0) return {};
  backend_.copy_from_host(ws_.rows.slice(0, R), in.logit_rows.data());
  Tensor last = ws_.last_hidden.slice(0, R), logits = ws_.logits.slice(0, R);
  backend_.gather_rows(hidden, ws_.rows.slice(0, R), last);
  backend_.linear(last, lm_head_, Tensor(), logits);
  return backend_.to_host_f32(logits);
}

}  // namespace nc

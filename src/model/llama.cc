#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "core/error.h"
#include "core/random_init.h"
#include "formats/gguf.h"

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
    NC_CHECK_AS(ErrorKind::Unsupported, rs.type == "none" || rs.type == "default",
                "model: unsupported rope scaling '{}'", rs.type);
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
  const int64_t D = cfg_.head_dim, I = cfg_.intermediate_size;
  const int64_t q_rows = cfg_.num_heads * D, kv_rows = cfg_.num_kv_heads * D;
  // Fused tensors (load() names them): one GEMM instead of two or three. Each is its parts'
  // rows stacked in order; a part has the fused shape with its own row count.
  struct Part {
    const char* suffix;
    int64_t rows;
  };
  struct Fused {
    const char* suffix;
    std::vector<Part> parts;
  };
  const std::vector<Fused> fused = {
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
  load(
      [&](const std::string& name, const Shape& shape) {
        for (const Fused& f : fused) {
          if (!name.ends_with(f.suffix)) continue;
          const std::string prefix = name.substr(0, name.size() - std::strlen(f.suffix));
          std::vector<const HostTensor*> parts;
          for (const Part& p : f.parts) {
            Shape part_shape = shape;
            part_shape[0] = p.rows;
            parts.push_back(&require(w, prefix + p.suffix, part_shape));
          }
          return upload_weight(stack_rows(parts, shape));
        }
        return upload_weight(require(w, name, shape));
      },
      w.count("lm_head.weight") || !cfg_.tie_embeddings);
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
        } else {  // a Linear [out, in]
          a = float(std::sqrt(3.0 / double(shape[1])));
        }
        backend_.fill_uniform(t, seed, -a, a);
        return t;
      },
      !cfg_.tie_embeddings);
}

void LlamaModel::load(const WeightFn& weight, bool has_lm_head) {
  const int64_t H = cfg_.hidden_size, D = cfg_.head_dim, Hq = cfg_.num_heads,
                Hk = cfg_.num_kv_heads;
  const int64_t I = cfg_.intermediate_size, V = cfg_.vocab_size;
  auto up = [&](const std::string& name, const Shape& shape) {
    Tensor t = weight(name, shape);
    weight_bytes_ += int64_t(t.nbytes());
    return t;
  };
  embed_ = up("model.embed_tokens.weight", {V, H});
  final_norm_ = up("model.norm.weight", {H});
  lm_head_ = has_lm_head ? up("lm_head.weight", {V, H}) : embed_;
  for (int64_t i = 0; i < cfg_.num_layers; ++i) {
    Layer L;
    auto lw = [&](const char* rest, const Shape& shape) { return up(layer_name(i, rest), shape); };
    L.input_norm = lw("input_layernorm.weight", {H});
    L.post_norm = lw("post_attention_layernorm.weight", {H});
    // q, k and v projections stacked (the random init draws it like any [out, H] Linear).
    L.qkv = lw("self_attn.qkv_proj.weight", {(Hq + 2 * Hk) * D, H});
    if (cfg_.attention_bias) L.qkv_bias = lw("self_attn.qkv_proj.bias", {(Hq + 2 * Hk) * D});
    if (cfg_.qk_norm) {
      L.q_norm = lw("self_attn.q_norm.weight", {D});
      L.k_norm = lw("self_attn.k_norm.weight", {D});
    }
    L.o_proj = lw("self_attn.o_proj.weight", {H, Hq * D});
    if (cfg_.o_proj_bias) L.o_bias = lw("self_attn.o_proj.bias", {H});
    L.gate_up = lw("mlp.gate_up_proj.weight", {2 * I, H});
    L.down = lw("mlp.down_proj.weight", {H, I});
    layers_.push_back(std::move(L));
  }
  // float32 on every backend (upload() would convert to the backend's dtype, and bf16 cos/sin
  // visibly shifts long-range attention).
  const HostTensor table = rope_cos_sin_table(cfg_, cfg_.max_position);
  cos_sin_ = backend_.alloc(table.shape, DType::F32);
  backend_.copy_from_host(cos_sin_, table.data.data());
  weight_bytes_ += int64_t(cos_sin_.nbytes());
}

KVCache LlamaModel::make_kv_cache(int num_pages, int page_size, KVLayout layout) {
  NC_CHECK(page_size >= 1 && page_size <= 256, "kv cache: page size {} outside 1..256", page_size);
  NC_CHECK(num_pages >= 1, "kv cache: needs at least one page, got {}", num_pages);
  // With graphs, one more page takes the padding rows' K/V (never one of the caller's pages).
  const bool scratch = graph_opts_.enabled && backend_.supports_graphs();
  scratch_page_ = scratch ? num_pages : -1;
  const int total = num_pages + (scratch ? 1 : 0);
  KVCache kv;
  kv.shape = KVCacheShape{int(cfg_.num_layers), total, page_size, int(cfg_.num_kv_heads),
                          int(cfg_.head_dim),   layout};
  const Shape shape = layout == KVLayout::NHD
                          ? Shape{total, 2, page_size, cfg_.num_kv_heads, cfg_.head_dim}
                          : Shape{total, 2, cfg_.num_kv_heads, page_size, cfg_.head_dim};
  for (int64_t l = 0; l < cfg_.num_layers; ++l)
    kv.layers.push_back(backend_.alloc(shape, backend_.dtype()));
  // New page tensors: graphs captured over the old ones would write into freed memory.
  if (!buckets_.empty()) backend_.clear_graphs();
  return kv;
}

int64_t LlamaModel::kv_bytes_per_page(int page_size) const {
  return cfg_.num_layers * 2 * int64_t(page_size) * cfg_.num_kv_heads * cfg_.head_dim *
         int64_t(dtype_size(backend_.dtype()));
}

void LlamaModel::reserve_workspace(int64_t max_tokens, int64_t max_rows) {
  ensure_workspace(std::max<int64_t>(max_tokens, 1), std::max<int64_t>(max_rows, 1));
  const int64_t R = ws_.row_capacity;
  if (!sampled_.defined() || sampled_.numel() < R) sampled_ = backend_.alloc({R}, DType::I32);
  sampling_bytes_ =
      int64_t(sampled_.nbytes()) +
      backend_.reserve_sampling(int(std::min<int64_t>(R, INT32_MAX)), int(cfg_.vocab_size));
}

void LlamaModel::ensure_workspace(int64_t T, int64_t R) {
  // Graph buckets run max_batch rows through the whole decoder.
  if (graph_opts_.enabled && backend_.supports_graphs() && T <= graph_opts_.max_batch)
    T = std::max<int64_t>(T, graph_opts_.max_batch),
    R = std::max<int64_t>(R, graph_opts_.max_batch);
  if (T <= ws_.capacity && R <= ws_.row_capacity) return;
  const int64_t cap = std::max(ws_.capacity, T), rcap = std::max(ws_.row_capacity, R);
  const int64_t H = cfg_.hidden_size, D = cfg_.head_dim;
  const DType dt = backend_.dtype();
  // Graphs hold the old buffers' addresses.
  if (!buckets_.empty()) backend_.clear_graphs();
  ws_ = Workspace{};  // free the old buffers first
  ws_.ids = backend_.alloc({cap}, DType::I32);
  ws_.positions = backend_.alloc({cap}, DType::I32);
  ws_.rows = backend_.alloc({rcap}, DType::I32);
  ws_.hidden = backend_.alloc({cap, H}, dt);
  ws_.residual = backend_.alloc({cap, H}, dt);
  ws_.qkv = backend_.alloc({cap, (cfg_.num_heads + 2 * cfg_.num_kv_heads) * D}, dt);
  ws_.q = backend_.alloc({cap, cfg_.num_heads * D}, dt);
  ws_.k = backend_.alloc({cap, cfg_.num_kv_heads * D}, dt);
  ws_.v = backend_.alloc({cap, cfg_.num_kv_heads * D}, dt);
  ws_.attn_out = backend_.alloc({cap, cfg_.num_heads * D}, dt);
  ws_.gate_up = backend_.alloc({cap, 2 * cfg_.intermediate_size}, dt);
  ws_.act = backend_.alloc({cap, cfg_.intermediate_size}, dt);
  ws_.last_hidden = backend_.alloc({rcap, H}, dt);
  ws_.logits = backend_.alloc({rcap, cfg_.vocab_size}, DType::F32);  // no bf16 rounding of logits
  ws_.capacity = cap;
  ws_.row_capacity = rcap;
  for (const Tensor* t :
       {&ws_.ids, &ws_.positions, &ws_.rows, &ws_.hidden, &ws_.residual, &ws_.qkv, &ws_.q, &ws_.k,
        &ws_.v, &ws_.attn_out, &ws_.gate_up, &ws_.act, &ws_.last_hidden, &ws_.logits})
    ws_.bytes += int64_t(t->nbytes());
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
  for (int32_t id : in.token_ids) {
    NC_CHECK(id < cfg_.vocab_size, "forward: token id {} outside the vocabulary [0, {})", id,
             cfg_.vocab_size);
    NC_CHECK(id >= 0 || -int64_t(id) <= sampled_rows_,
             "forward: token id {} names row {} of the previous step's samples, which had {}", id,
             -int64_t(id) - 1, sampled_rows_);
  }
  for (int32_t p : in.positions)
    NC_CHECK(p >= 0 && p < cfg_.max_position, "forward: position {} outside [0, {})", p,
             cfg_.max_position);
  for (int32_t r : in.logit_rows)
    NC_CHECK(r >= 0 && r < T, "forward: logit row {} outside [0, {})", r, T);
}

void LlamaModel::attention_block(const Layer& L, const AttentionPlan& plan, Tensor kv_pages,
                                 int64_t T) {
  const int64_t D = cfg_.head_dim;
  Tensor x = ws_.hidden.slice(0, T), qkv = ws_.qkv.slice(0, T), q = ws_.q.slice(0, T),
         k = ws_.k.slice(0, T), v = ws_.v.slice(0, T);
  backend_.linear(x, L.qkv, L.qkv_bias, qkv);
  // Split, per-head q/k RMSNorm (Qwen3; undefined weights otherwise) and rope in one op.
  backend_.qkv_split_norm_rope(qkv, L.q_norm, L.k_norm, float(cfg_.rms_eps),
                               ws_.positions.slice(0, T), cos_sin_, int(D), q, k, v);
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

AttentionShape LlamaModel::attention_shape(const KVCache& kv) const {
  return AttentionShape{int(cfg_.num_heads), int(cfg_.num_kv_heads), int(cfg_.head_dim),
                        float(1.0 / std::sqrt(double(cfg_.head_dim))), kv.shape};
}

void LlamaModel::run_decoder(const AttentionPlan& plan, KVCache& kv, int64_t T) {
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
    attention_block(L, plan, kv.layers[l], T);
    backend_.add_rmsnorm(hidden, residual, L.post_norm, float(cfg_.rms_eps));
    mlp_block(L, T);
  }
  backend_.add_rmsnorm(hidden, residual, final_norm_, float(cfg_.rms_eps));
}

std::vector<float> LlamaModel::forward(const ForwardInput& in, KVCache& kv) {
  const Tensor logits = forward_device(in, kv);
  sampled_rows_ = 0;
  if (!logits.defined()) return {};
  return backend_.to_host_f32(logits);
}

std::vector<int32_t> LlamaModel::forward_sample(const ForwardInput& in, KVCache& kv,
                                                const std::vector<RowSampling>& rows) {
  return forward_sample_async(in, kv, rows)->wait();
}

std::unique_ptr<PendingTokens> LlamaModel::forward_sample_async(
    const ForwardInput& in, KVCache& kv, const std::vector<RowSampling>& rows) {
  NC_CHECK(rows.size() == in.logit_rows.size(),
           "forward_sample: {} rows of sampling parameters for {} logit rows", rows.size(),
           in.logit_rows.size());
  const Tensor logits = forward_device(in, kv);
  const int64_t R = int64_t(rows.size());
  sampled_rows_ = 0;
  if (!logits.defined()) return ready_tokens({});
  // Grown after this step's placeholders were read from the old buffer (stream order).
  if (!sampled_.defined() || sampled_.numel() < R)
    sampled_ = backend_.alloc({std::max(R, ws_.row_capacity)}, DType::I32);
  std::unique_ptr<PendingTokens> ids =
      backend_.sample_tokens_async(logits, rows, sampled_.slice(0, R));
  sampled_rows_ = R;
  return ids;
}

void LlamaModel::upload_token_ids(const ForwardInput& in, int64_t T) {
  std::vector<int32_t> ids = in.token_ids, pairs;
  ids.resize(size_t(T), 0);
  for (size_t t = 0; t < in.token_ids.size(); ++t) {
    if (ids[t] >= 0) continue;
    pairs.push_back(int32_t(t));
    pairs.push_back(-1 - ids[t]);
    ids[t] = 0;
  }
  backend_.copy_from_host(ws_.ids.slice(0, T), ids.data());
  if (pairs.empty()) return;
  Tensor p = backend_.alloc({int64_t(pairs.size())}, DType::I32);
  backend_.copy_from_host(p, pairs.data());
  backend_.scatter_ids(sampled_.slice(0, sampled_rows_), p, ws_.ids.slice(0, T));
}

Tensor LlamaModel::forward_device(const ForwardInput& in, KVCache& kv) {
  pass_called_ = std::chrono::steady_clock::now();
  validate_input(in, kv);
  if (graph_eligible(in, kv)) {
    if (auto logits = forward_graph(in, kv)) return *logits;
  }
  const int64_t T = int64_t(in.token_ids.size()), R = int64_t(in.logit_rows.size());
  ensure_workspace(T, R);
  std::unique_ptr<AttentionPlan> plan = backend_.plan_attention(in.attention, attention_shape(kv));
  upload_token_ids(in, T);
  backend_.copy_from_host(ws_.positions.slice(0, T), in.positions.data());
  if (R > 0) backend_.copy_from_host(ws_.rows.slice(0, R), in.logit_rows.data());
  host_prep_s_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - pass_called_).count();
  backend_.mark_pass_begin();
  run_decoder(*plan, kv, T);
  if (R == 0) {
    backend_.mark_pass_end();
    return Tensor();
  }
  Tensor last = ws_.last_hidden.slice(0, R), logits = ws_.logits.slice(0, R);
  backend_.gather_rows(ws_.hidden.slice(0, T), ws_.rows.slice(0, R), last);
  backend_.linear(last, lm_head_, Tensor(), logits);
  backend_.mark_pass_end();
  return logits;
}

}  // namespace nc

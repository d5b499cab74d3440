// LlamaModel's forward pass (model/llama.h); loading is model/llama_load.cc, CUDA graphs
// model/llama_graphs.cc.
#include "model/llama.h"

#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/error.h"
#include "kv/sliding_window.h"

namespace nc {

KVCache LlamaModel::make_kv_cache(int num_pages, int page_size, KVLayout layout) {
  NC_CHECK(page_size >= 1 && page_size <= 256, "kv cache: page size {} outside 1..256", page_size);
  NC_CHECK(num_pages >= 1, "kv cache: needs at least one page, got {}", num_pages);
  // With graphs, one more page takes the padding rows' K/V (never one of the caller's pages).
  const bool scratch = graph_opts_.enabled && backend_.supports_graphs();
  scratch_page_ = scratch ? num_pages : -1;
  const int total = num_pages + (scratch ? 1 : 0);
  KVCache kv;
  if (cfg_.mla.enabled()) {  // one latent row per token (layout has no meaning there)
    kv.shape = mla_kv_shape(cfg_, total, page_size);
    for (int64_t l = 0; l < cfg_.num_layers; ++l)
      kv.layers.push_back(backend_.alloc(mla_page_tensor_shape(kv.shape), backend_.dtype()));
    if (!buckets_.empty()) backend_.clear_graphs();
    return kv;
  }
  kv.shape = KVCacheShape{int(cfg_.num_layers), total, page_size, int(cfg_.num_kv_heads),
                          int(cfg_.head_dim),   layout};
  kv.shape.fp8 = kv_dtype_ == KVCacheDType::FP8;
  kv.shape.k_scale = kv_k_scale_;
  kv.shape.v_scale = kv_v_scale_;
  const Shape shape = layout == KVLayout::NHD
                          ? Shape{total, 2, page_size, cfg_.num_kv_heads, cfg_.head_dim}
                          : Shape{total, 2, cfg_.num_kv_heads, page_size, cfg_.head_dim};
  for (int64_t l = 0; l < cfg_.num_layers; ++l)
    kv.layers.push_back(backend_.alloc(shape, kv_page_dtype()));
  make_bounds(kv);
  // New page tensors: graphs captured over the old ones would write into freed memory.
  if (!buckets_.empty()) backend_.clear_graphs();
  return kv;
}

int64_t LlamaModel::kv_bytes_per_page(int page_size) const {
  const auto elem = int64_t(dtype_size(kv_page_dtype()));
  if (cfg_.mla.enabled())
    return cfg_.num_layers * mla_kv_shape(cfg_, 1, page_size).elems_per_page() * elem;
  return cfg_.num_layers * 2 * int64_t(page_size) * cfg_.num_kv_heads * cfg_.head_dim * elem;
}

DType LlamaModel::kv_page_dtype() const {
  return nc::kv_page_dtype(kv_dtype_, backend_.dtype());
}

void LlamaModel::set_kv_cache_dtype(KVCacheDType t, float k_scale, float v_scale) {
  const DType pages = nc::kv_page_dtype(t, backend_.dtype());
  NC_CHECK_AS(ErrorKind::Unsupported, backend_.supports_kv_dtype(pages),
              "kv cache dtype {}: the {} backend has no attention over {} pages (it takes {})",
              kv_cache_dtype_name(t), backend_.name(), dtype_name(pages),
              dtype_name(backend_.dtype()));
  NC_CHECK_AS(ErrorKind::Unsupported, !cfg_.mla.enabled() || pages == backend_.dtype(),
              "kv cache dtype {}: MLA models (latent KV pages) keep the backend's dtype {}",
              kv_cache_dtype_name(t), dtype_name(backend_.dtype()));
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              k_scale > 0 && v_scale > 0 && std::isfinite(k_scale) && std::isfinite(v_scale),
              "kv cache scales k {} v {}: need finite values > 0", k_scale, v_scale);
  kv_dtype_ = t;
  kv_k_scale_ = k_scale;
  kv_v_scale_ = v_scale;
}

void LlamaModel::set_tensor_parallel(Communicator* comm) {
  tp_ = comm;
  if (tp_ && ws_.logits_part.defined())  // a workspace made already: the gather's scratch too
    tp_->reserve_gather(int64_t(ws_.logits_part.nbytes()) * tp_->size());
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
  if (cfg_.sandwich_norms) ws_.normed = backend_.alloc({cap, H}, dt);
  ws_.qkv = backend_.alloc({cap, (cfg_.num_heads + 2 * cfg_.num_kv_heads) * D}, dt);
  ws_.q = backend_.alloc({cap, cfg_.num_heads * D}, dt);
  ws_.k = backend_.alloc({cap, cfg_.num_kv_heads * D}, dt);
  ws_.v = backend_.alloc({cap, cfg_.num_kv_heads * D}, dt);
  ws_.attn_out = backend_.alloc({cap, cfg_.num_heads * D}, dt);
  ws_.gate_up = backend_.alloc({cap, 2 * cfg_.intermediate_size}, dt);
  ws_.act = backend_.alloc({cap, cfg_.intermediate_size}, dt);
  ws_.last_hidden = backend_.alloc({rcap, H}, dt);
  ws_.logits = backend_.alloc({rcap, cfg_.vocab_size}, DType::F32);  // no bf16 rounding of logits
  if (cfg_.vocab_count > 0) {
    ws_.logits_part = backend_.alloc({rcap, cfg_.vocab_count}, DType::F32);
    // The gather's own scratch, before any graph is captured.
    if (tp_) tp_->reserve_gather(int64_t(ws_.logits_part.nbytes()) * tp_->size());
  }
  ws_.moe.allocate(backend_, cfg_.moe, H, cap);
  ws_.bytes += ws_.moe.bytes;
  ws_.capacity = cap;
  ws_.row_capacity = rcap;
  for (const Tensor* t : {&ws_.ids, &ws_.positions, &ws_.rows, &ws_.hidden, &ws_.residual,
                          &ws_.normed, &ws_.qkv, &ws_.q, &ws_.k, &ws_.v, &ws_.attn_out,
                          &ws_.gate_up, &ws_.act, &ws_.last_hidden, &ws_.logits, &ws_.logits_part})
    if (t->defined()) ws_.bytes += int64_t(t->nbytes());
  if (cfg_.mla.enabled()) {
    mla_ws_ = MlaWorkspace{};
    mla_ws_.ensure(backend_, cfg_, cap);
    ws_.bytes += mla_ws_.bytes;
  }
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
    NC_CHECK(p >= 0 && p < cfg_.served_positions(), "forward: position {} outside [0, {})", p,
             cfg_.served_positions());
  for (int32_t r : in.logit_rows)
    NC_CHECK(r >= 0 && r < T, "forward: logit row {} outside [0, {})", r, T);
}

void LlamaModel::attention_block(size_t l, const Plans& plans, KVCache& kv, const Tensor& in,
                                 Tensor out, int64_t T, const AddNorm* norm) {
  const Layer& L = layers_[l];
  const int ki = kinds_.of_layer[l];
  const LayerKind& kind = kinds_.kinds[size_t(ki)];
  const AttentionPlan& plan = *plans[size_t(ki)];
  const Tensor& kv_pages = kv.layers[l];
  if (L.mla) {
    if (norm) backend_.add_rmsnorm(in, norm->residual, norm->weight, norm->eps);
    mla_block(backend_, cfg_, *L.mla, mla_ws_, plan, kv_pages, ws_.positions.slice(0, T),
              kind.cos_sin, in, out, T);
    return;
  }
  const int64_t D = cfg_.head_dim;
  Tensor qkv = ws_.qkv.slice(0, T), q = ws_.q.slice(0, T), k = ws_.k.slice(0, T),
         v = ws_.v.slice(0, T);
  if (norm) {  // the layer's input norm with the projection (one kernel fewer where CUDA fuses)
    backend_.add_rmsnorm_linear(in, *norm, L.qkv, L.qkv_bias, qkv);
  } else {
    backend_.linear(in, L.qkv, L.qkv_bias, qkv);
  }
  Tensor attn = ws_.attn_out.slice(0, T);
  const AttentionPlan* sparse =
      sparse_step_.plans.empty() ? nullptr : sparse_step_.plans[size_t(ki)].get();
  const bool sparse_layer = sparse && layer_is_sparse(int64_t(l));
  // Split, per-head q/k RMSNorm (Qwen3, Gemma 3; undefined weights otherwise) and rope in one op;
  // for a dense layer the backend may also append k/v to the pages there (one kernel fewer).
  const float eps = float(cfg_.rms_eps);
  const Tensor pos = ws_.positions.slice(0, T);
  if (sparse_layer) {
    backend_.qkv_split_norm_rope(qkv, L.q_norm, L.k_norm, eps, pos, kind.cos_sin, int(D), q, k, v);
    backend_.sparse_attention(*sparse, q, k, v, kv_pages, kv.bounds[l], attn);
  } else if (backend_.qkv_split_norm_rope_append(plan, kv_pages, qkv, L.q_norm, L.k_norm, eps, pos,
                                                 kind.cos_sin, int(D), q, k, v)) {
    backend_.attention_appended(plan, q, k, v, kv_pages, attn);
  } else {
    backend_.attention(plan, q, k, v, kv_pages, attn);
  }
  if (sparse_step_.update_in_layers) update_bounds(l, kv);
  backend_.linear(attn, L.o_proj, L.o_bias, out);
  if (tp_) tp_->all_reduce_sum(out);  // each rank's heads' share of the projection
}

void LlamaModel::mlp_block(const Layer& L, const Tensor& in, Tensor out, int64_t T,
                           const AddNorm* norm) {
  Tensor gu = ws_.gate_up.slice(0, T), act = ws_.act.slice(0, T);
  if (cfg_.activation == Activation::Silu && !L.moe.router.defined()) {
    backend_.silu_mlp(in, L.gate_up, L.down, gu, act, out, norm);  // fewer kernels on CUDA
  } else {
    if (norm) backend_.add_rmsnorm(in, norm->residual, norm->weight, norm->eps);
    if (L.moe.router.defined()) return moe_block(backend_, cfg_.moe, L.moe, ws_.moe, in, out, T);
    backend_.linear(in, L.gate_up, Tensor(), gu);
    backend_.gelu_tanh_and_mul(gu, act);
    backend_.linear(act, L.down, Tensor(), out);
  }
  if (tp_) tp_->all_reduce_sum(out);  // each rank's features' share of the down projection
}

AttentionShape LlamaModel::attention_shape(const KVCache& kv, const LayerKind& kind) const {
  if (cfg_.mla.enabled()) return mla_attention_shape(cfg_, kv.shape, kind.sm_scale);
  AttentionShape s{int(cfg_.num_heads), int(cfg_.num_kv_heads), int(cfg_.head_dim), kind.sm_scale,
                   kv.shape};
  s.logits_soft_cap = kind.logits_soft_cap;
  s.window_left = kind.window_left;
  return s;
}

std::vector<AttentionStep> LlamaModel::kind_steps(const AttentionStep& step, int page_size) const {
  std::vector<AttentionStep> out;
  for (const LayerKind& k : kinds_.kinds)
    out.push_back(k.window_left >= 0 ? window_view(step, k.window_left, page_size) : step);
  return out;
}

void LlamaModel::project_logits(const Tensor& last, Tensor logits) {
  const int64_t R = last.dim(0);
  if (tp_ && cfg_.vocab_count > 0) {  // each rank's vocabulary columns, gathered in rank order
    Tensor part = ws_.logits_part.slice(0, R);
    backend_.linear(last, lm_head_, Tensor(), part);
    tp_->all_gather(part, logits);
  } else {
    backend_.linear(last, lm_head_, Tensor(), logits);
  }
  if (cfg_.final_soft_cap > 0) backend_.soft_cap(logits, float(cfg_.final_soft_cap));
}

Tensor LlamaModel::run_decoder(const Plans& plans, KVCache& kv, int64_t T) {
  Tensor hidden = ws_.hidden.slice(0, T), residual = ws_.residual.slice(0, T);
  backend_.embedding(embed_, ws_.ids.slice(0, T), hidden);
  if (tp_ && cfg_.vocab_count > 0) tp_->all_reduce_sum(hidden);  // one rank holds each row
  if (cfg_.scale_embeddings) {
    // Hugging Face multiplies by sqrt(hidden) rounded to the activations' dtype.
    float s = float(std::sqrt(double(cfg_.hidden_size)));
    if (backend_.dtype() == DType::BF16) s = bf16_to_f32(f32_to_bf16(s));
    backend_.scale(hidden, s);
  }
  backend_.copy_rows(hidden, residual);  // residual stream starts at the embeddings
  if (cfg_.sandwich_norms) {
    Tensor x = ws_.normed.slice(0, T);
    backend_.rmsnorm(residual, layers_[0].input_norm, float(cfg_.rms_eps), x);
    for (size_t l = 0; l < layers_.size(); ++l) x = sandwich_layer(l, plans, kv, x, T);
    return x;
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (whole_decode_layer(l, plans, kv, T)) continue;
    const Layer& L = layers_[l];
    // Each add_rmsnorm travels with the op that reads its output (fused there on CUDA).
    const float eps = float(cfg_.rms_eps);
    const AddNorm input_norm{residual, L.input_norm, eps}, post_norm{residual, L.post_norm, eps};
    if (l == 0) backend_.rmsnorm(residual, L.input_norm, eps, hidden);
    attention_block(l, plans, kv, hidden, hidden, T, l == 0 ? nullptr : &input_norm);
    mlp_block(L, hidden, hidden, T, &post_norm);
  }
  backend_.add_rmsnorm(hidden, residual, final_norm_, float(cfg_.rms_eps));
  return hidden;
}

bool LlamaModel::whole_decode_layer(size_t l, const Plans& plans, KVCache& kv, int64_t T) {
  const Layer& L = layers_[l];
  if (T != 1 || tp_ || L.mla || L.moe.router.defined() || cfg_.activation != Activation::Silu ||
      !sparse_step_.plans.empty() || sparse_step_.update_in_layers)
    return false;
  const int ki = kinds_.of_layer[l];
  const DecodeLayerWeights w{L.input_norm, L.qkv,    L.qkv_bias,  L.q_norm,  L.k_norm,
                             L.o_proj,     L.o_bias, L.post_norm, L.gate_up, L.down};
  DecodeLayerIo io;
  io.hidden = ws_.hidden.slice(0, 1);
  io.residual = ws_.residual.slice(0, 1);
  io.add_hidden = l > 0;  // the first layer's input is the embeddings alone
  io.qkv = ws_.qkv.slice(0, 1);
  io.attn = ws_.attn_out.slice(0, 1);
  io.act = ws_.act.slice(0, 1);
  io.positions = ws_.positions.slice(0, 1);
  io.cos_sin = kinds_.kinds[size_t(ki)].cos_sin;
  io.eps = float(cfg_.rms_eps);
  return backend_.decode_layer(*plans[size_t(ki)], kv.layers[l], w, io);
}

Tensor LlamaModel::sandwich_layer(size_t l, const Plans& plans, KVCache& kv, Tensor x, int64_t T) {
  const Layer& L = layers_[l];
  const float eps = float(cfg_.rms_eps);
  Tensor hidden = ws_.hidden.slice(0, T), residual = ws_.residual.slice(0, T);
  // x = input_norm(residual) here; the attention writes its output to hidden.
  attention_block(l, plans, kv, x, hidden, T, nullptr);
  backend_.rmsnorm(hidden, L.attn_out_norm, eps, x);    // post-attention norm
  backend_.add_rmsnorm(x, residual, L.post_norm, eps);  // residual += it; x = pre-ffw norm
  mlp_block(L, x, hidden, T, nullptr);
  backend_.rmsnorm(hidden, L.mlp_out_norm, eps, x);  // post-feed-forward norm
  const Tensor& next = l + 1 < layers_.size() ? layers_[l + 1].input_norm : final_norm_;
  backend_.add_rmsnorm(x, residual, next, eps);  // residual += it; x = the next input
  return x;
}

Tensor LlamaModel::forward_logits(const ForwardInput& in, KVCache& kv) {
  Tensor logits = forward_device(in, kv);
  // The placeholders were read (stream order); until the next draw none may be named.
  sampled_rows_ = 0;
  return logits;
}

std::vector<float> LlamaModel::forward(const ForwardInput& in, KVCache& kv) {
  const Tensor logits = forward_logits(in, kv);
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
  return sample_logits_async(forward_logits(in, kv), rows);
}

std::unique_ptr<PendingTokens> LlamaModel::sample_logits_async(
    const Tensor& logits, const std::vector<RowSampling>& rows) {
  const int64_t R = int64_t(rows.size());
  sampled_rows_ = 0;
  if (!logits.defined()) {
    NC_CHECK(R == 0, "sample: {} rows of sampling parameters for a pass without logits", R);
    return ready_tokens({});
  }
  NC_CHECK(logits.ndim() == 2 && logits.dim(0) == R,
           "sample: {} rows of sampling parameters for logits {}", R, shape_str(logits.shape()));
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
  if (cfg_.vocab_count > 0) {  // a vocabulary shard: ids it does not hold read its zero row
    for (int32_t& id : ids) {
      NC_CHECK(id >= 0, "forward: a sampled-token placeholder with a vocabulary shard");
      id = id >= cfg_.vocab_first && id < cfg_.vocab_first + cfg_.vocab_count
               ? int32_t(id - cfg_.vocab_first)
               : int32_t(cfg_.vocab_count);
    }
  }
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
  shift_keys(in.kv_shifts, kv);  // the streaming window's moved keys, before any layer runs
  prepare_sparse(in, kv);
  // A step that reads sparsely runs eagerly (its selection is data-dependent:
  // docs/long_context.md); other steps may replay a graph and update the bounds after it.
  if (!sparse_step_.any_sparse && graph_eligible(in, kv)) {
    if (auto logits = forward_graph(in, kv)) {
      if (sparse_.enabled)
        for (size_t l = 0; l < layers_.size(); ++l) update_bounds(l, kv);
      return *logits;
    }
  }
  const int64_t T = int64_t(in.token_ids.size()), R = int64_t(in.logit_rows.size());
  ensure_workspace(T, R);
  Plans plans;
  const std::vector<AttentionStep> steps = kind_steps(in.attention, kv.shape.page_size);
  for (size_t k = 0; k < steps.size(); ++k)
    plans.push_back(backend_.plan_attention(steps[k], attention_shape(kv, kinds_.kinds[k])));
  plan_sparse(in, steps, kv);
  sparse_step_.update_in_layers = sparse_.enabled;
  upload_token_ids(in, T);
  backend_.copy_from_host(ws_.positions.slice(0, T), in.positions.data());
  if (R > 0) backend_.copy_from_host(ws_.rows.slice(0, R), in.logit_rows.data());
  host_prep_s_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - pass_called_).count();
  backend_.mark_pass_begin();
  const Tensor final_hidden = run_decoder(plans, kv, T);
  if (R == 0) {
    backend_.mark_pass_end();
    return Tensor();
  }
  Tensor last = ws_.last_hidden.slice(0, R), logits = ws_.logits.slice(0, R);
  backend_.gather_rows(final_hidden, ws_.rows.slice(0, R), last);
  project_logits(last, logits);
  backend_.mark_pass_end();
  return logits;
}

}  // namespace nc

// Backend: the ops the decoder needs, on one device. The model calls them in order; a backend
// may run them asynchronously (the CUDA backend does) until something is copied to the host.
//
// Conventions: activations are 2-D row-major [tokens, features] in the backend's dtype();
// weights come from upload() in Hugging Face layout (Linear: [out, in]); ids and positions are
// int32 tensors on the device.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/fp8_weight.h"
#include "backend/logprobs.h"
#include "backend/moe_routing.h"
#include "core/host_tensor.h"
#include "core/tensor.h"
#include "kv/host_tier.h"
#include "kv/page_selection.h"
#include "kv/paged_kv.h"

namespace nc {

// The attention of one layer kind. The variant fields follow FlashInfer's DefaultAttention:
//   sm_scale         scores are q.k * sm_scale (1/sqrt(head_dim) unless the model asks otherwise,
//                    e.g. Gemma's query_pre_attn_scalar^-1/2);
//   logits_soft_cap  > 0: each score s becomes cap * tanh(s / cap) before the softmax (Gemma 2),
//                    in every level; 0: off;
//   window_left      >= 0: a query row at position p sees keys at positions p - window_left .. p
//                    (Hugging Face's sliding_window W is window_left W - 1); -1: off. It masks the
//                    last (own, causal) level only, relative to each entry's end as FlashInfer
//                    does (a row's position in an entry: kv_len - q_len + its index). Shared
//                    levels are never masked: a windowed layer's step comes from window_view()
//                    (kv/sliding_window.h), whose shared levels lie wholly inside every window.
//   latent_dim       > 0: MLA (Backend::mla_attention): one key "head" per token, the cached
//                    [c_kv | k_pe] row of head_dim values (kv.latent), and the value is its first
//                    latent_dim values (c_kv); num_kv_heads 1. 0: ordinary attention.
//   mla_nope_dim, mla_v_dim  MLA: the heads' nope and value dims (W_UK's and W_UV's), which a
//                    plan needs to choose the expanded form (mla_form.h); 0: absorbed only.
struct AttentionShape {
  int num_qo_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float sm_scale = 1.0f;
  KVCacheShape kv;
  float logits_soft_cap = 0.0f;
  int window_left = -1;
  int latent_dim = 0;
  int mla_nope_dim = 0;
  int mla_v_dim = 0;
};

// What a backend builds once per step from the host-side AttentionStep (FlashInfer's "plan"),
// then reuses for every layer ("run").
class AttentionPlan {
 public:
  virtual ~AttentionPlan() = default;
};

// How Backend::sample_tokens draws the token of one logit row.
struct RowSampling {
  float inv_temperature = 0;  // 0: argmax
  uint64_t seed = 0;
  int32_t top_k = -1;  // <= 0: off
  float top_p = 1;     // in (0, 1]; 1: off
  float min_p = 0;     // in [0, 1]; 0: off
  // >= 0: the draw also gives the sampled token's log-probability and this many top entries
  // (backend/logprobs.h: from the logits as they come, before the bias and the temperature).
  int32_t logprobs = -1;
  // (id, value): value is added to logit id before the draw (OpenAI's logit_bias).
  std::vector<std::pair<int32_t, float>> bias = {};
  // Structured output: the allowed tokens as a bitmask of ceil(V / 32) words (bit id % 32 of
  // word id / 32; backend/sampling_filter.h, apply_token_bitmask_row); empty: every token. Others
  // get -inf after the bias, before the draw; the log-probabilities stay those of the raw logits.
  std::vector<int32_t> token_bitmask = {};
  // Whether a filter applies (greedy rows ignore the filters: the argmax passes all of them).
  bool filtered() const { return inv_temperature != 0 && (top_k > 0 || top_p < 1 || min_p > 0); }
  // Whether the row asks for more than a token (log-probabilities or a bias): the CUDA sampler
  // draws such rows with the host reference (sample_on_host).
  bool has_extras() const { return logprobs >= 0 || !bias.empty(); }
  void validate() const;  // nc::Error naming the bad value
};

// Kernels a backend built at run time (the CUDA backend's attention JIT, docs/gpu.md) since it
// was made: objects compiled, the seconds spent compiling, objects loaded from the on-disk cache.
// An add_rmsnorm folded into the op that reads its output (add_rmsnorm_linear, silu_mlp):
// residual += x, then x = rmsnorm(residual) * weight, as add_rmsnorm does.
struct AddNorm {
  Tensor residual, weight;
  float eps = 0;
};

// A dense pre-norm decoder layer (Llama, Qwen2/3, Mistral: RMSNorm, rope, SiLU MLP) as
// Backend::decode_layer takes it. Weights as LlamaModel holds them: qkv [(Hq + 2 Hk) D, H] and
// gate_up [2 I, H] fused; biases, q_norm and k_norm may be undefined.
struct DecodeLayerWeights {
  Tensor input_norm, qkv, qkv_bias, q_norm, k_norm, o_proj, o_bias, post_norm, gate_up, down;
};
// Its one token's rows: hidden and residual [1, H] (the layer loop's convention, below), the
// scratch rows qkv, attn and act, the rope position (i32 [1]) and table, the norms' eps.
struct DecodeLayerIo {
  Tensor hidden, residual;
  bool add_hidden = true;  // false for the first layer: hidden holds nothing to add
  Tensor qkv, attn, act;
  Tensor positions, cos_sin;
  float eps = 1e-6f;
};

struct KernelBuildStats {
  int64_t compiles = 0;
  int64_t cache_hits = 0;
  double compile_s = 0;
};

// Token ids drawn by Backend::sample_tokens_async, on their way to the host.
class PendingTokens {
 public:
  virtual ~PendingTokens() = default;
  // Waits until the ids are on the host and returns them (call once).
  virtual std::vector<int32_t> wait() = 0;
  // After wait(): one entry per row, filled for the rows whose RowSampling::logprobs >= 0
  // (others: token -1); empty when no row asked. Call once.
  virtual std::vector<RowLogprobs> logprobs() { return {}; }
};
// Ids (and their log-probabilities) already on the host.
std::unique_ptr<PendingTokens> ready_tokens(std::vector<int32_t> ids,
                                            std::vector<RowLogprobs> logprobs = {});
// Backend::sample_tokens' draw for one row of float32 logits, on the host (the reference): the
// row's bias is added first.
int32_t draw_token(std::span<const float> logits, const RowSampling& p);
// The reference draw of R rows of float32 logits [R, V] (row-major), with the log-probabilities
// the rows ask for: what Backend::sample_tokens_async returns by default.
std::unique_ptr<PendingTokens> draw_on_host(std::span<const float> logits, int64_t vocab,
                                            const std::vector<RowSampling>& rows);

// Host memory of the prefix cache's host tier (kv/host_tier.h): page-locked on CUDA, so that
// copies to and from it run asynchronously; plain memory on the CPU.
class HostBuffer {
 public:
  virtual ~HostBuffer() = default;
  virtual std::byte* data() = 0;
  virtual int64_t bytes() const = 0;
};
// Plain (pageable, 64-byte aligned) host memory.
std::unique_ptr<HostBuffer> plain_host_buffer(int64_t bytes);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;
  virtual DType dtype() const = 0;  // of weights and activations

  // Memory.
  virtual Tensor alloc(const Shape& shape, DType dtype) = 0;
  // A float32 HostTensor is converted to dtype(); a raw one (HostTensor::raw: f16, bf16 or a
  // GGML block format) only where keeps_weight_dtype(its dtype) says so, and is then kept as it
  // is, a Tensor of that dtype that linear() (as w) and embedding() (as table) accept. Callers
  // dequantize the others first (formats/gguf.h, dequantized).
  virtual Tensor upload(const HostTensor& t) = 0;
  virtual bool keeps_weight_dtype(DType t) const { return t == DType::F32; }
  // An FP8 linear weight (backend/fp8_weight.h): a Tensor of dtype F8E4M3 [M, K] that linear()
  // takes as w, computing the FP8 product that header describes. Default: an Unsupported
  // nc::Error naming the backend (fp8 weights are not available there).
  virtual Tensor upload_fp8_linear(const Fp8Weight& w);
  // Whether attention() takes page tensors of dtype t (kv/kv_dtype.h): the backend's own dtype,
  // and F8E4M3 where the backend has fp8 attention (KVCacheShape::fp8).
  virtual bool supports_kv_dtype(DType t) const { return t == dtype(); }
  virtual void copy_from_host(Tensor dst, const void* src) = 0;  // dst.nbytes() bytes
  virtual std::vector<float> to_host_f32(const Tensor& t) = 0;   // any float dtype, synchronises
  // Memory the device could still give (the engine sizes its KV cache from it): the machine's
  // physical memory on the host; free device memory, after the backend has handed cached
  // blocks back, on a GPU. May synchronise.
  virtual int64_t free_memory_bytes();

  // out[t] = table[ids[t]]. ids: i32 [T]; table: [V, H]; out: [T, H].
  virtual void embedding(const Tensor& table, const Tensor& ids, Tensor out) = 0;
  // out = x / rms(x) * weight, per row. x, out: [N, H]; weight: [H].
  virtual void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) = 0;
  // residual += x; x = rmsnorm(residual) * weight. Both [N, H].
  virtual void add_rmsnorm(Tensor x, Tensor residual, const Tensor& weight, float eps) = 0;
  // out = x @ w^T (+ bias). x: [N, K]; w: [M, K]; bias: [M] or undefined; out: [N, M].
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor out) = 0;
  // The attention block's prologue in one op: splits each row of the fused projection
  // qkv [T, (Hq + 2 Hk) * D] into q [T, Hq*D], k [T, Hk*D] and v [T, Hk*D], RMS-normalises every
  // q head with q_norm [D] and every k head with k_norm [D] (either may be undefined: no norm),
  // then rotates every q and k head in place, rotate-half (NeoX/HF) style, by its row's position
  // (positions: i32 [T]) with cos_sin: f32 [max_pos, D], cos in the first D/2 columns and sin in
  // the last D/2. Hq and Hk come from q's and k's widths. (The standalone rope of the backends,
  // for tests: cpu_rope in backend/cpu/cpu_ops.h, cuda_rope in backend/cuda/cuda_backend.h.)
  virtual void qkv_split_norm_rope(const Tensor& qkv, const Tensor& q_norm, const Tensor& k_norm,
                                   float eps, const Tensor& positions, const Tensor& cos_sin,
                                   int head_dim, Tensor q, Tensor k, Tensor v) = 0;
  // out = silu(gate_up[:, :I]) * gate_up[:, I:]. gate_up: [T, 2I]; out: [T, I].
  virtual void silu_and_mul(const Tensor& gate_up, Tensor out) = 0;
  // The gated MLP's down projection: out = silu_and_mul(gate_up) @ w^T (+ bias), the activation
  // rounded to dtype() as silu_and_mul writes it. gate_up: [T, 2I]; w: [M, I]; bias: [M] or
  // undefined; out: [T, M]; act: [T, I] scratch for the activation (undefined: allocated). The
  // default runs silu_and_mul into act, then linear; a backend may fuse the two (CUDA does at
  // small T: one kernel fewer per layer) where its result is the same.
  virtual void silu_mul_linear(const Tensor& gate_up, const Tensor& w, const Tensor& bias,
                               Tensor out, Tensor act = Tensor());
  // add_rmsnorm(x, norm.residual, norm.weight, norm.eps), then out = linear(x, w, bias). CUDA
  // runs the FP8 form with the norm and the activation quantiser in one kernel (fp8_norm.cu).
  virtual void add_rmsnorm_linear(Tensor x, const AddNorm& norm, const Tensor& w,
                                  const Tensor& bias, Tensor out);
  // The gated SiLU MLP in one op: with `norm` (may be null) add_rmsnorm_linear's norm first,
  // gate_up = x @ gate_up_w^T as linear() writes it, then out = silu_mul_linear(gate_up, down_w)
  // (no biases). x: [T, H]; gate_up_w: [2I, H]; down_w: [M, I]; gate_up: [T, 2I] and act: [T, I]
  // scratch; out: [T, M]. The default runs those ops; CUDA runs the FP8 form with fewer kernels
  // (fp8_gemm.h: Fp8Gemm::silu_mlp), whose gate_up holds unscaled sums afterwards (neither
  // scratch is a result).
  virtual void silu_mlp(const Tensor& x, const Tensor& gate_up_w, const Tensor& down_w,
                        Tensor gate_up, Tensor act, Tensor out, const AddNorm* norm);
  // out = gelu_tanh(gate_up[:, :I]) * gate_up[:, I:] (GeGLU with the tanh approximation,
  // PyTorch's gelu(approximate="tanh"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))).
  virtual void gelu_tanh_and_mul(const Tensor& gate_up, Tensor out);
  // x *= s, elementwise (Gemma's embedding scale sqrt(hidden)).
  virtual void scale(Tensor x, float s);
  // x = cap * tanh(x / cap), elementwise (Gemma 2's final-logit soft cap; x float32 logits).
  virtual void soft_cap(Tensor x, float cap);
  // dst = src (same shape, same device).
  virtual void copy_rows(const Tensor& src, Tensor dst) = 0;
  // x += y, elementwise.
  virtual void add(Tensor x, const Tensor& y) = 0;
  // out[i] = x[rows[i]]. rows: i32 [R].
  virtual void gather_rows(const Tensor& x, const Tensor& rows, Tensor out) = 0;
  // Structured output: logits[r][i] = -inf where bit i % 32 of bitmask[r][i / 32] is clear.
  // logits: f32 [R, V]; bitmask: i32 [R, ceil(V / 32)] on the device (checked by
  // check_token_bitmask, op_checks.h). The CPU and CUDA backends implement it in place.
  virtual void apply_token_bitmask(Tensor logits, const Tensor& bitmask);
  // dst[pairs[2i]] = src[pairs[2i + 1]] for every pair i. src, dst: i32; pairs: i32 [2P]. How a
  // step takes token ids that the previous step sampled on the device (asynchronous scheduling).
  virtual void scatter_ids(const Tensor& src, const Tensor& pairs, Tensor dst) = 0;

  // Mixture of experts (backend/moe_routing.h). moe_route: each token's top_k experts, ids i32
  // [T, k] and weights f32 [T, k], from router logits f32 [T, E]; bias f32 [E] for sigmoid
  // routing (undefined: zero), undefined otherwise.
  virtual void moe_route(const Tensor& logits, const Tensor& bias, const MoeRouting& r, Tensor ids,
                         Tensor weights);
  // out[t] = sum over slots j = 0, 1, ... (in that order) of weights[t, j] * expert ids[t, j]
  // applied to x[t], where expert e(x) = down[e] . (silu(G_e x) * (U_e x)), G_e and U_e the first
  // and last I rows of gate_up[e]. x, out: [T, H]; gate_up: [E, 2I, H]; down: [E, H, I] (weights
  // as upload() keeps them); ids, weights: [T, k]. A token's output depends on its own row, ids
  // and weights only, never on the other tokens of the call (batch invariance).
  virtual void moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                           const Tensor& gate_up, const Tensor& down, Tensor out);
  // Allocates moe_experts' scratch for calls of up to max_tokens rows of these sizes now (the
  // engine sizes the KV cache from the memory left after it, and CUDA graphs must not see it
  // move) and keeps it; returns the bytes it holds then (0: none needed).
  virtual int64_t reserve_moe(int max_tokens, int top_k, int num_experts, int hidden, int inter) {
    return 0;
  }

  // Attention over paged KV. plan_attention takes host metadata only (no device sync);
  // attention() appends the step's k/v into kv_pages (the layer's page tensor) at the slots the
  // plan's last level names, then attends. q, out: [T, Hq*D]; k, v: [T, Hk*D].
  virtual std::unique_ptr<AttentionPlan> plan_attention(const AttentionStep& step,
                                                        const AttentionShape& shape) = 0;
  virtual void attention(const AttentionPlan& plan, const Tensor& q, const Tensor& k,
                         const Tensor& v, Tensor kv_pages, Tensor out) = 0;
  // The attention prologue with the append folded in: qkv_split_norm_rope (same arguments), and,
  // where the backend can, the step's k and v rows written into kv_pages at the slots of plan's
  // last level exactly as attention(plan, ...) would append them; returns whether it appended.
  // After true the layer attends with attention_appended (no second append); after false with
  // attention(). The default only splits (false); CUDA appends for bf16 pages of its own plans.
  virtual bool qkv_split_norm_rope_append(const AttentionPlan& plan, Tensor kv_pages,
                                          const Tensor& qkv, const Tensor& q_norm,
                                          const Tensor& k_norm, float eps, const Tensor& positions,
                                          const Tensor& cos_sin, int head_dim, Tensor q, Tensor k,
                                          Tensor v);
  // attention() without its append (k and v are there for the shape checks only). Only after
  // qkv_split_norm_rope_append returned true for this plan and pages; the default throws an
  // Unsupported nc::Error naming the backend.
  virtual void attention_appended(const AttentionPlan& plan, const Tensor& q, const Tensor& k,
                                  const Tensor& v, Tensor kv_pages, Tensor out);

  // One whole decoder layer of a decode step of one request, where the backend has it as one
  // kernel (CUDA: decode_layer_kernels.h); returns false, nothing enqueued, where it does not.
  // Equals, up to the order of float32 sums: add_rmsnorm(hidden, residual, input_norm) (only
  // rmsnorm(residual) into x without add_hidden), qkv = linear, qkv_split_norm_rope, attention
  // over plan (appending k/v), o = linear, add_rmsnorm(o, residual, post_norm), gate_up,
  // silu_and_mul, hidden = linear(act, down): residual then holds the stream up to the
  // attention's add and hidden the MLP's output. The default returns false.
  virtual bool decode_layer(const AttentionPlan& plan, Tensor kv_pages, const DecodeLayerWeights& w,
                            const DecodeLayerIo& io);

  // MLA (DeepSeek's multi-head latent attention, docs/models.md), in the absorbed form. The
  // defaults throw an Unsupported nc::Error naming the backend.
  //
  // out[t, h*So + m] = sum_k x[t, h*Sx + k] * w[h, m, k] for each head h < H, m < M, k < K:
  // a per-head matmul over the first K values of each head's Sx-wide slice of x, written to the
  // first M values of each So-wide slice of out (other columns of out untouched). x: [T, H*Sx];
  // w: [H, M, K] (K <= Sx); out: [T, H*So] (M <= So). (q_nope through W_UK into latent space,
  // latent outputs through W_UV.)
  virtual void head_linear(const Tensor& x, const Tensor& w, Tensor out);
  // The MLA prologue: for every row t (position positions[t]) and head h, rotates q's rope part
  // q[t, h*(Dn+Dr) + Dn ..] by the row's position into q_mla[t, h*(Dl+Dr) + Dl ..]; the latent
  // row kv_a[t] = [c_kv (Dl) | k_pe (Dr)] becomes latent[t] = [rmsnorm(c_kv) * kv_norm |
  // rope(k_pe)]. q: [T, H*(Dn+Dr)]; kv_a, latent: [T, Dl+Dr]; q_mla: [T, H*(Dl+Dr)] (its first Dl
  // values per head untouched); cos_sin: f32 [max_pos, Dr] as qkv_split_norm_rope's. interleaved:
  // the rope rotates pairs (x[2i], x[2i+1]) in place (DeepSeek's layout) rather than (x[i],
  // x[i+Dr/2]).
  virtual void mla_rope_norm(const Tensor& q, const Tensor& kv_a, const Tensor& kv_norm, float eps,
                             const Tensor& positions, const Tensor& cos_sin, bool interleaved,
                             int nope_dim, Tensor q_mla, Tensor latent);
  // Attention over MLA pages with a plan whose shape has latent_dim > 0: appends latent [T, Dl+Dr]
  // at the plan's last level's slots, then out[t, h] (Dl values) = softmax_j(q_mla[t, h] . K_j *
  // sm_scale) over the cached rows K_j, times their c_kv parts; levels merged by their LSE as
  // attention() does. q_mla: [T, H*(Dl+Dr)]; out: [T, H*Dl].
  virtual void mla_attention(const AttentionPlan& plan, const Tensor& q_mla, const Tensor& latent,
                             Tensor kv_pages, Tensor out);
  // The whole MLA attention in value space: attn [T, H*Dv] from q [T, H*(Dn+Dr)] (its q_nope) and
  // q_mla (its rope'd q_pe, mla_rope_norm's), w_uk_t [H, Dl, Dn], w_uv [H, Dv, Dl]; o_lat
  // [T, H*Dl] scratch. The default is the absorbed form: head_linear(q, w_uk_t, q_mla),
  // mla_attention, head_linear(o_lat, w_uv, attn). A backend may instead decompress the keys and
  // values of an entry's context where that costs less (a long prefill chunk: cpu_mla.h).
  virtual void mla_attention_values(const AttentionPlan& plan, const Tensor& q, Tensor q_mla,
                                    const Tensor& latent, Tensor kv_pages, const Tensor& w_uk_t,
                                    const Tensor& w_uv, Tensor o_lat, Tensor attn);

  // Query-aware sparse decode attention (Quest; kv/page_bounds.h, kv/page_selection.h,
  // docs/long_context.md). The defaults throw an Unsupported nc::Error naming the backend.
  //
  // A layer's page bounds: f32 [num_pages, 2, num_kv_heads, head_dim], per page the element-wise
  // minimum (index 0) and maximum (index 1) of the keys in its valid slots (+inf / -inf where a
  // page has none). update_page_bounds recomputes the listed pages from their contents:
  // page_slots i32 [P, 2], rows (page id, valid slots in 1..page_size); kv_pages is the layer's
  // page tensor, laid out as kv says. Pages not listed keep their bounds.
  virtual void update_page_bounds(const Tensor& kv_pages, const KVCacheShape& kv,
                                  const Tensor& page_slots, Tensor bounds);
  // A plan for sparse_attention: `step` as plan_attention takes it; every own-level entry with one
  // query row (decode) whose kv_len exceeds its budget (sel.budget(b): sel.entry_budgets[b], or
  // sel.token_budget when that list is empty; 0 = dense) is to be read sparsely
  // (entry_is_sparse, kv/page_selection.h), every other entry and every shared level densely.
  // nc::Error as check_page_selection says (budgets below sinks + window, a windowed shape).
  virtual std::unique_ptr<AttentionPlan> plan_sparse_attention(const AttentionStep& step,
                                                               const AttentionShape& shape,
                                                               const PageSelection& sel);
  // As attention() (k/v appended at the same slots, levels merged the same way), except that
  // each entry the plan reads sparsely attends only to the pages that
  // select_pages(step, decode_page_scores(step, bounds, q), sel) keeps, the scores taken from
  // `bounds` as they are when the op runs (the step's own append not folded in: an entry's last
  // page is always kept, so its bound never decides anything). With sel.per_head (an HND cache
  // only; kv/head_selection.h) each KV head of such an entry attends its own query heads over the
  // pages select_head_pages keeps for it instead; the CPU backend has it, CUDA refuses the plan
  // (Unsupported).
  virtual void sparse_attention(const AttentionPlan& plan, const Tensor& q, const Tensor& k,
                                const Tensor& v, Tensor kv_pages, const Tensor& bounds, Tensor out);

  // Streaming window (StreamingLLM; kv/page_shift.h, docs/long_context.md). The default throws an
  // Unsupported nc::Error naming the backend.
  //
  // Moves the keys of whole pages to other positions. For each row (page, from, to) of shifts
  // (i32 [P, 3]) and each slot s of the page, every K head vector x of the slot (rotate-half pairs
  // (x[i], x[i + D/2]), as qkv_split_norm_rope rotates them) is rotated back by the angles
  //   a_i = fl(float(from + s) * inv_freq[i]) - fl(float(to + s) * inv_freq[i])
  // (the float32 products the cos/sin tables of model/rope.h are made of; their difference, its
  // cos and sin and the rotation in double):
  //   x[i] <- x[i] cos a_i + x[i + D/2] sin a_i,  x[i + D/2] <- x[i + D/2] cos a_i - x[i] sin a_i.
  // A key rotated to position from + s then equals the key rotated to to + s up to rounding,
  // whatever factor the table folds into cos and sin (YaRN's, longrope's): a pure rotation. V, the
  // pages not listed and the slots' validity are untouched. inv_freq: f32 [head_dim / 2];
  // kv_pages: the layer's page tensor, laid out as kv says (not latent, not fp8). P may be 0: a
  // backend with the op accepts it and does nothing (how a model checks that the op exists).
  virtual void shift_key_positions(Tensor kv_pages, const KVCacheShape& kv, const Tensor& shifts,
                                   const Tensor& inv_freq);

  // Seeded random weights (model_loader.h, load format "dummy"): element i of t gets
  // low + (high - low) * uniform_hash01(seed, i) (random_init.h), rounded to t's dtype; the same
  // values on every backend. The default makes them on the host, one tensor at a time.
  virtual void fill_uniform(Tensor t, uint64_t seed, float low, float high);

  // CUDA graphs (backends that support them; the decoder uses them for decode-only steps).
  // plan_attention_graph() plans into device buffers owned by `slot` that never move, so a graph
  // captured with one plan of a slot replays correctly after a later plan of the same slot with
  // the same batch size and number of levels (cascade steps: non-causal shared levels of at
  // most B entries each, then the own level of B one-row entries); it returns null when the
  // step cannot be planned that way. No entry may have more than max_pages pages. A plan that
  // needs a slot of another shape remakes it and drops every graph (slot ids are not graph keys).
  // begin_capture()/end_capture(key) record the work enqueued between them as graph `key` (it
  // does not run); replay(key) runs it.
  virtual bool supports_graphs() const { return false; }
  virtual std::unique_ptr<AttentionPlan> plan_attention_graph(const AttentionStep& step,
                                                              const AttentionShape& shape, int slot,
                                                              int max_pages) {
    return nullptr;
  }
  virtual void begin_capture();
  virtual void end_capture(int key);  // key < 0: discard what was recorded
  virtual bool has_graph(int key) const { return false; }
  virtual void replay(int key);
  virtual void clear_graphs() {}
  // Device memory the graphs' fixed plan regions and scratch hold now (0 without graphs; grows as
  // graphs are captured: Engine::warmup() captures them all).
  virtual int64_t graph_memory_bytes() const { return 0; }
  // Device memory the host tier's copies hold besides the pages, for pages of `page_bytes` (all
  // layers): CUDA's staging buffer (cuda_kv_copy.h); 0 on the CPU.
  virtual int64_t host_tier_device_bytes(int64_t /*page_bytes*/) const { return 0; }

  // One token per row of float32 logits [R, V] without copying the logits to the host (rows[r]
  // says how to draw row r; its bias is added to its logits first): argmax (ties to the lowest id)
  // where inv_temperature is 0, else the Gumbel-max draw argmax_i(logits[r][i] * inv_temperature -
  // log(-log(u_i))) with u_i = uniform_hash01(seed, i) (random_init.h), taken over the candidates
  // that temperature, top-k, top-p and min-p leave (backend/sampling_filter.h, filter_candidates),
  // or over all ids when no filter is on. A row's token depends on its logits and its RowSampling
  // only. It draws with sample_tokens_async and waits (not virtual: backends implement the
  // asynchronous draw).
  std::vector<int32_t> sample_tokens(const Tensor& logits, const std::vector<RowSampling>& rows);
  // Allocates sample_tokens' scratch for up to max_rows rows of `vocab` ids now (the engine sizes
  // the KV cache from the memory left after it) and keeps it; returns the bytes it holds then (0:
  // none needed), so a call for fewer rows than reserved allocates nothing and tells the size.
  virtual int64_t reserve_sampling(int max_rows, int vocab) { return 0; }
  // The same draw without waiting for it: the ids are written to `ids` (i32 [R] on the device,
  // for later ops in stream order) and copied to the host, where the returned handle's wait()
  // gives them, with the log-probabilities of rows that ask (PendingTokens::logprobs). The
  // default draws on the host at once (sample_on_host).
  virtual std::unique_ptr<PendingTokens> sample_tokens_async(const Tensor& logits,
                                                             const std::vector<RowSampling>& rows,
                                                             Tensor ids);

  // The host tier's pages (backend/kv_copy.cc; CUDA: cuda_kv_copy.cc). alloc_host_buffer gives
  // `bytes` of host memory (page-locked where the backend copies asynchronously).
  // copy_kv_pages runs `copies` in order between the KV cache's page tensors `layers` (one per
  // layer, [num_pages, ...] contiguous) and `host`, where host page h holds layer l's page at byte
  // (h * layers.size() + l) * layer_page_bytes. On the CPU it copies now. On CUDA the copies go
  // on a copy stream after the work already enqueued (an event), and the work enqueued later
  // waits for them (another event): the host never waits, and a device page freed after its
  // offload may be reused by the next step at once. sync_kv_copies() waits for them all.
  virtual std::unique_ptr<HostBuffer> alloc_host_buffer(int64_t bytes);
  virtual void copy_kv_pages(const std::vector<Tensor>& layers, std::span<const KVPageCopy> copies,
                             HostBuffer& host);
  virtual void sync_kv_copies() {}

  // Kernels built at run time so far (zeros for backends that build none).
  virtual KernelBuildStats kernel_builds() const { return {}; }

  // Device time of forward passes, where the backend can measure it: the model marks the start
  // and end of each pass; device_busy_seconds() is the summed device time between the marks of
  // the passes that have completed (0 when not measured). It never waits for a pass.
  virtual void mark_pass_begin() {}
  virtual void mark_pass_end() {}
  virtual double device_busy_seconds() { return 0; }

 protected:
  // sample_tokens' draw on the host, from to_host_f32(logits): the reference for the other
  // backends' draws (ids ready, log-probabilities of the rows that ask).
  std::unique_ptr<PendingTokens> sample_on_host(const Tensor& logits,
                                                const std::vector<RowSampling>& rows);
};

std::unique_ptr<Backend> make_cpu_backend();
// Throws nc::Error when the binary was built without CUDA or no GPU is present.
std::unique_ptr<Backend> make_cuda_backend(int device_index = 0);

}  // namespace nc

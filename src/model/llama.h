// One decoder for the Llama family and its relatives (docs/models.md): Llama 2/3, SmolLM2,
// Qwen2 (q/k/v bias), Qwen3 (q/k RMSNorm), Mistral (sliding window), Phi-3 (fused qkv and
// gate_up checkpoints, longrope), Gemma 2 (GeGLU, sandwich norms, scaled embeddings, attention
// and final-logit soft caps, alternating sliding/global layers), Gemma 3 text (Gemma 2's
// layer plus q/k norms, five sliding layers to one global, each kind with its own rope) and
// DeepSeek-V2/V3 (MLA attention, model/mla.h, over latent KV pages; MoE layers, model/moe.h).
//
// Layers come in kinds (model/layer_kinds.h): a kind is one attention variant (window, scale,
// soft cap) with its own cos/sin table. Each step plans the attention once per kind: the
// step as the engine laid it out for full layers, window_view() of it for sliding ones.
// The model owns its weights on the backend's device and a grow-only activation workspace;
// the KV cache is the caller's (the engine owns the page pool).
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/host_tensor.h"
#include "dist/communicator.h"
#include "kv/kv_dtype.h"
#include "kv/page_shift.h"
#include "kv/paged_kv.h"
#include "model/layer_kinds.h"
#include "model/mla.h"
#include "model/model_config.h"
#include "model/moe.h"
#include "model/rope.h"

namespace nc {

// The KV pages of every layer, on the backend's device.
struct KVCache {
  KVCacheShape shape;
  // each [num_pages, 2, page_size, Hkv, D] (NHD) or HND; MLA: [num_pages, page_size, 1, Dl + Dr]
  std::vector<Tensor> layers;
  // Sparse attention only (LlamaModel::set_sparse_options), one per layer: the page bounds
  // f32 [num_pages, 2, Hkv, D] (Backend::update_page_bounds) of a layer read sparsely,
  // undefined for a dense one (LlamaModel::layer_is_sparse); empty when sparse is off.
  std::vector<Tensor> bounds;
};

// Query-aware sparse decode attention (Quest; docs/long_context.md). With it on, the KV cache
// keeps page bounds for the layers read sparsely, every pass recomputes the bounds of the pages
// it appends into, and decode entries with a budget (ForwardInput::sparse_budgets) read only
// the pages kv/page_selection.h keeps. The first dense_layers layers and sliding-window layers
// stay dense.
struct SparseOptions {
  bool enabled = false;
  int sink_pages = 1;     // PageSelection::sink_pages
  int window = 128;       // PageSelection::window_tokens
  int dense_layers = 2;   // the first layers, always dense
  bool per_head = false;  // PageSelection::per_head (an HND cache only)
};

// One step's input: the new tokens of every scheduled request, concatenated.
struct ForwardInput {
  // [T]. An id of -1 - r stands for the token the previous forward pass sampled for its logit row
  // r on the device (LlamaModel::forward_sample_async), not yet known on the host: asynchronous
  // scheduling plans step n + 1 while step n runs.
  std::vector<int32_t> token_ids;
  std::vector<int32_t> positions;   // [T], absolute position of each token in its sequence
  AttentionStep attention;          // num_tokens == T; see kv/paged_kv.h
  std::vector<int32_t> logit_rows;  // rows of [0, T) whose logits are returned, in this order
  // Sparse attention (SparseOptions): one token budget per entry of attention.levels.back()
  // (the own level), 0 = dense; empty = every entry dense. An entry is read sparsely in the
  // sparse layers when it has one query row (decode) and more own-level tokens than its budget
  // (kv/page_selection.h, entry_is_sparse). Needs sparse on; a budget > 0 below sink_pages *
  // page_size + window is an error.
  std::vector<int32_t> sparse_budgets;
  // Streaming window (kv/page_shift.h): cached keys moved to new positions in every layer before
  // the step's pass reads or writes anything (LlamaModel::check_kv_shifts says whether it can).
  std::vector<KVPageShift> kv_shifts;
};

// Pages read and skipped by sparse selection, summed over passes, layers and entries.
struct SparseCounts {
  int64_t pages_read = 0;
  int64_t pages_skipped = 0;
};

// Seeded random weights made on the backend's device from the config alone ("dummy" load
// format), scaled so activations stay O(1): norms 1, a Linear [out, in] uniform with standard
// deviation 1/sqrt(in), embeddings (and lm_head) 1/sqrt(hidden), biases +-0.02. Same seed, same
// weights (up to the backend's dtype rounding).
struct RandomWeights {
  uint64_t seed = 0;
};

// CUDA graphs for decode-only steps (backends that support them): the step is padded to the
// smallest bucket (1, 2, 4, 8, 16, then multiples of 16 up to max_batch) that holds it; each
// (bucket, number of attention levels of each layer kind) graph is captured on first use and
// replayed after. Cascade steps (shared levels before the own level) take graphs up to max_levels
// levels; deeper ones run eagerly. Padding rows attend over one scratch page past the engine's
// pages (and have empty entries in the shared levels).
struct GraphOptions {
  bool enabled = false;
  int max_batch = 256;
  int max_levels = 3;
};

class LlamaModel {
 public:
  // Uploads the weights (checked with check_weights) to the backend: raw ones (a GGUF's
  // quantized matrices) stay raw where the backend keeps their dtype (Backend::upload).
  LlamaModel(const ModelConfig& config, const WeightMap& weights, Backend& backend);
  LlamaModel(const ModelConfig& config, const RandomWeights& random, Backend& backend);

  const ModelConfig& config() const { return cfg_; }
  Backend& backend() { return backend_; }

  // num_pages pages for the caller (plus one scratch page when graphs are on: call
  // set_graph_options first).
  KVCache make_kv_cache(int num_pages, int page_size, KVLayout layout = KVLayout::NHD);
  // Bytes of one page across all layers (K and V, or MLA's latent rows) in the cache's dtype.
  int64_t kv_bytes_per_page(int page_size) const;
  // The KV cache's element type for later make_kv_cache calls (kv/kv_dtype.h; default auto:
  // the backend's dtype) and its static K/V scales (> 0, finite; fp8 only). nc::Error
  // (Unsupported) where the backend has no attention over such pages or the model is MLA
  // (its latent cache stays in the backend's dtype).
  void set_kv_cache_dtype(KVCacheDType t, float k_scale = 1.0f, float v_scale = 1.0f);
  KVCacheDType kv_cache_dtype() const { return kv_dtype_; }
  DType kv_page_dtype() const;  // of the page tensors make_kv_cache allocates

  // Allocates the activation workspace for steps of up to max_tokens tokens and max_rows logit
  // rows now (it grows on demand otherwise), with the backend's sampling scratch and the
  // sampled-ids buffer, so memory left for the KV cache can be measured.
  void reserve_workspace(int64_t max_tokens, int64_t max_rows);
  int64_t weight_bytes() const { return weight_bytes_; }  // as stored on the device
  // The dense linear layers' weight dtype as stored on the device (core/dtype.h's name: "bf16",
  // "f32", "fp8_e4m3", or a GGML block type the backend keeps); empty for a model without one
  // (every layer MLA).
  std::string linear_weight_dtype() const;
  int64_t workspace_bytes() const { return ws_.bytes + sampling_bytes_; }

  // Sparse attention (SparseOptions), before make_kv_cache. nc::Error (Unsupported) for an MLA
  // model or one with no more layers than dense_layers; InvalidArgument for negative sinks,
  // window or dense layers.
  void set_sparse_options(const SparseOptions& options);
  const SparseOptions& sparse_options() const { return sparse_; }
  // Tensor parallelism (model/tensor_parallel.h): this model is rank comm->rank()'s shard, built
  // from shard_config/shard_weights; after o_proj and down_proj each pass sums the ranks' partial
  // outputs through `comm` (not owned; null: a whole model), and with a vocabulary shard it sums
  // the embedding lookups and gathers the logits' columns. Every rank runs the same passes.
  void set_tensor_parallel(Communicator* comm);
  // Whether layer l keeps page bounds and reads decode entries sparsely (sparse on, l past the
  // dense layers, not a sliding-window layer).
  bool layer_is_sparse(int64_t l) const;
  // Bytes of one page's bounds across the sparse layers (0 with sparse off): the memory plan
  // counts them with the page.
  int64_t bounds_bytes_per_page() const;
  // Recomputes the bounds of pages whose contents changed outside a forward pass (the host
  // tier's reloads): page_slots holds (page id, valid slots) pairs. No-op with sparse off.
  void refresh_page_bounds(KVCache& kv, const std::vector<int32_t>& page_slots);
  // Throws nc::Error naming the first (layer, page) whose bounds differ from the min/max of its
  // first valid slots' keys, for the listed (page id, valid slots) pairs. Copies every sparse
  // layer to the host: for tests and invariant checks.
  void check_page_bounds(const KVCache& kv, const std::vector<int32_t>& page_slots);
  SparseCounts sparse_counts() const { return sparse_counts_; }

  void set_graph_options(const GraphOptions& options);
  const GraphOptions& graph_options() const { return graph_opts_; }
  int64_t num_graph_steps() const { return graph_steps_; }  // steps that ran as a graph
  // Host seconds from a forward pass's call to the start of its device work (validation, the
  // attention plan, input copies): the part of a step's host time the GPU waits for.
  double host_prep_seconds() const { return host_prep_s_; }
  int num_graphs() const;  // graphs captured so far

  // Whether steps may carry kv_shifts (the streaming window, kv/page_shift.h): nc::Error
  // (Unsupported) naming the reason when not: a rope whose position change is not a pure rotation
  // (check_rope_position_shift), fp8 pages (every shift would round the keys to e4m3 again), or a
  // backend without Backend::shift_key_positions.
  void check_kv_shifts(KVCache& kv);

  // Runs one step: appends the new tokens' K/V to their pages and returns float32 logits on the
  // host, row-major [logit_rows.size(), vocab_size]. Throws nc::Error on inconsistent input
  // (token ids outside the vocabulary, positions past max_position, bad page tables).
  std::vector<float> forward(const ForwardInput& in, KVCache& kv);
  // The same step, but one token per logit row is drawn on the device (Backend::sample_tokens
  // with rows[r] for logit row r); only the ids come back to the host.
  std::vector<int32_t> forward_sample(const ForwardInput& in, KVCache& kv,
                                      const std::vector<RowSampling>& rows);
  // forward_sample without waiting for the ids: the step is queued on the device and the handle
  // gives its ids. The next pass may name them as placeholder ids (ForwardInput::token_ids).
  std::unique_ptr<PendingTokens> forward_sample_async(const ForwardInput& in, KVCache& kv,
                                                      const std::vector<RowSampling>& rows);
  // forward_sample_async in two halves, so that the host can work between them while the device
  // runs the pass (structured output fills its token bitmasks there): the pass up to its logits
  // on the device (placeholder ids resolved from the last draw; undefined when the step has no
  // logit rows), then the draw over them into the ids that the next pass's placeholders name.
  // The logits are workspace: draw (or copy) them before the next pass. forward() is
  // to_host_f32(forward_logits()).
  Tensor forward_logits(const ForwardInput& in, KVCache& kv);
  std::unique_ptr<PendingTokens> sample_logits_async(const Tensor& logits,
                                                     const std::vector<RowSampling>& rows);

 private:
  struct Layer {
    // post_norm is the norm before the MLP (Gemma's pre_feedforward_layernorm); attn_out_norm
    // and mlp_out_norm (Gemma's post-attention and post-feed-forward norms) only with
    // sandwich_norms.
    Tensor input_norm, post_norm, attn_out_norm, mlp_out_norm;
    Tensor qkv, qkv_bias;   // fused [(Hq + 2 Hk) D, H]; the bias undefined unless attention_bias
    Tensor q_norm, k_norm;  // undefined unless qk_norm
    Tensor o_proj, o_bias;  // o_bias undefined unless o_proj_bias
    Tensor gate_up;         // fused [2 I, H]
    Tensor down;
    std::optional<MlaLayer> mla;  // DeepSeek's MLA in place of qkv .. o_bias (model/mla.h)
    MoeLayerWeights moe;          // sparse layers (ModelConfig::moe): instead of gate_up and down
  };
  struct Workspace {
    int64_t capacity = 0;      // tokens
    int64_t row_capacity = 0;  // logit rows
    int64_t bytes = 0;
    Tensor ids, positions, rows, hidden, residual, normed, qkv, q, k, v, attn_out, gate_up, act,
        last_hidden, logits, logits_part;  // normed: sandwich norms only; logits_part: a
                                           // vocabulary shard's columns
    MoeWorkspace moe;
  };
  // Gives a weight of the given name and shape on the device.
  using WeightFn = std::function<Tensor(const std::string& name, const Shape& shape)>;

  void load(const WeightFn& weight, bool has_lm_head);
  // Layer i's q/k/v (fused) and o projections and q/k norms, through `up` (counts the bytes).
  void load_attention(Layer& L, int64_t i, const WeightFn& up);
  void load_rope_tables();  // kinds_ and their cos/sin tables
  // Uploads t as it is where the backend keeps its dtype, else dequantized to float32 first.
  Tensor upload_weight(const HostTensor& t);
  Tensor upload_linear(const WeightMap& w, const std::string& name, const Shape& shape,
                       const std::vector<std::pair<std::string, int64_t>>& parts);
  void validate_input(const ForwardInput& in, const KVCache& kv) const;
  // ws_.ids[0, T) = the step's ids (zero past in.token_ids), placeholders taken from sampled_.
  void upload_token_ids(const ForwardInput& in, int64_t T);
  void ensure_workspace(int64_t num_tokens, int64_t num_rows);
  AttentionShape attention_shape(const KVCache& kv, const LayerKind& kind) const;
  // One plan per layer kind (index = kind).
  using Plans = std::vector<std::unique_ptr<AttentionPlan>>;
  // The step each kind attends with (window_view for sliding kinds).
  std::vector<AttentionStep> kind_steps(const AttentionStep& step, int page_size) const;
  // Embedding, every layer and the final norm over the first T rows (ids already uploaded);
  // returns the final hidden states [T, H] (a workspace slice).
  Tensor run_decoder(const Plans& plans, KVCache& kv, int64_t T);
  // The LM head over `last` [R, hidden] into logits [R, vocab]: a vocabulary shard's columns
  // gathered across ranks, then the final soft cap.
  void project_logits(const Tensor& last, Tensor logits);
  // Gemma's layer: norms around the attention and around the MLP. x holds the layer's normed
  // input; returns the tensor that holds the next layer's (or the final norm's) output.
  Tensor sandwich_layer(size_t l, const Plans& plans, KVCache& kv, Tensor x, int64_t T);
  // Layer l's attention; in and out [T, H] may be the same tensor. `norm` (may be null): the
  // add_rmsnorm that produces `in`, run with the q/k/v projection.
  void attention_block(size_t l, const Plans& plans, KVCache& kv, const Tensor& in, Tensor out,
                       int64_t T, const AddNorm* norm);
  // Sparse attention, per pass (model/llama_sparse.cc). The pass's sparse state: a sparse plan
  // per layer kind where some entry is read sparsely (null: dense), the (page, valid slots)
  // pairs the pass appends into on the device, and whether attention_block updates the bounds
  // (eager passes; a graph pass updates them after its replay).
  struct SparseStep {
    std::vector<std::unique_ptr<AttentionPlan>> plans;
    Tensor page_slots;
    bool any_sparse = false;
    bool update_in_layers = false;
  };
  // Checks in.sparse_budgets, uploads the page slots and counts the pages selection reads and
  // skips (resets sparse_step_ when sparse is off).
  void prepare_sparse(const ForwardInput& in, const KVCache& kv);
  PageSelection page_selection(const ForwardInput& in) const;
  void plan_sparse(const ForwardInput& in, const std::vector<AttentionStep>& steps,
                   const KVCache& kv);
  void update_bounds(size_t l, KVCache& kv);  // layer l's bounds over sparse_step_.page_slots
  void make_bounds(KVCache& kv) const;
  // `norm` (may be null): the add_rmsnorm that produces `in`, run by the block's first op.
  void mlp_block(const Layer& layer, const Tensor& in, Tensor out, int64_t T, const AddNorm* norm);
  // Layer l of a one-token pass as one backend op (Backend::decode_layer) where the layer is a
  // plain dense one (no MoE, MLA, sparse bounds or tensor parallelism); false: run it op by op.
  bool whole_decode_layer(size_t l, const Plans& plans, KVCache& kv, int64_t T);
  // Applies the step's kv_shifts to every layer with its kind's frequencies (llama_kv_shift.cc).
  void shift_keys(const std::vector<KVPageShift>& shifts, KVCache& kv);
  // The step's logits on the device, [logit_rows, vocab] (undefined when there are none).
  Tensor forward_device(const ForwardInput& in, KVCache& kv);
  // Decode-only steps as CUDA graphs; empty optional when the backend cannot plan the step so.
  bool graph_eligible(const ForwardInput& in, const KVCache& kv) const;
  std::optional<Tensor> forward_graph(const ForwardInput& in, KVCache& kv);

  ModelConfig cfg_;
  Backend& backend_;
  Communicator* tp_ = nullptr;  // set_tensor_parallel
  Tensor embed_, final_norm_, lm_head_;
  std::vector<Layer> layers_;
  LayerKinds kinds_;
  Workspace ws_;
  MlaWorkspace mla_ws_;  // MLA models only
  int64_t weight_bytes_ = 0;
  GraphOptions graph_opts_;
  SparseOptions sparse_;
  SparseCounts sparse_counts_;
  SparseStep sparse_step_;
  Tensor slots_buf_;  // grow-only i32 [capacity, 2] behind sparse_step_.page_slots
  KVCacheDType kv_dtype_ = KVCacheDType::Auto;
  float kv_k_scale_ = 1.0f, kv_v_scale_ = 1.0f;
  // Graph key of bucket i with levels[k] attention levels for kind k (each 1..max_levels):
  // i + buckets_.size() * (the levels as a mixed-radix number). Kind k's plan slot in that graph:
  // key * kinds + k.
  int graph_key(size_t bucket, const std::vector<size_t>& levels) const;
  std::vector<int> buckets_;
  int scratch_page_ = -1;  // page index of the padding rows' K/V; -1 = none
  int64_t graph_steps_ = 0;
  // The last forward_sample_async's ids on the device, and how many (0 after a pass that did
  // not sample): what placeholder ids refer to.
  Tensor sampled_;
  int64_t sampled_rows_ = 0;
  int64_t sampling_bytes_ = 0;  // the backend's sampling scratch (reserve_workspace)
  double host_prep_s_ = 0;
  std::chrono::steady_clock::time_point pass_called_;  // forward_device's entry
};

// The graph bucket sizes up to max_batch: 1, 2, 4, 8, 16, 32, 48, ... (multiples of 16), with
// max_batch itself last.
std::vector<int> graph_buckets(int max_batch);

}  // namespace nc

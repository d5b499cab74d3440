// StepModel: what the engine needs from a model, and no more. The real one (LlamaModel on a
// backend) is adapted in llama_runner.cc; tests plug in fakes that check the paged KV
// bookkeeping token by token (tests/fake_model.h).
//
// The engine calls, in this order: the shape queries and reserve() once, free_memory_bytes()
// when it sizes the KV cache from free memory, allocate_kv() once, then per step forward_async()
// (the pass up to its logits, queued) and, once the host has what the draw needs (structured
// output's token bitmasks, filled while the device runs the pass), either sample_async() (tokens
// drawn by the model; only where can_sample_on_device()) or take_logits() (host logits for the
// engine's sampler); and memory() / timings() for its statistics. graph_batch_sizes() tells
// Engine::warmup() which decode batch sizes to run so that every CUDA graph is captured.
// Only vocab_size, max_position, on_cuda, kv_bytes_per_page, allocate_kv and forward are
// required; every other member has a default that describes a plain host model.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/text_codec.h"
#include "kv/host_tier.h"
#include "kv/paged_kv.h"
#include "model/llama.h"
#include "nanocascade/engine.h"

namespace nc {

// Memory the model holds besides the KV cache.
struct ModelMemory {
  int64_t weight_bytes = 0;     // weights (with the rope table)
  int64_t workspace_bytes = 0;  // the activation workspace reserve() allocated
};

// Running totals over the forward passes so far (zeros where the model does not measure them).
struct ModelTimings {
  double device_s = 0;             // device seconds of the forward passes (first kernel to logits)
  double host_prep_s = 0;          // host seconds before each pass's device work starts
  int64_t graph_steps = 0;         // steps that ran as a CUDA graph
  KernelBuildStats kernel_builds;  // kernels the backend compiled or loaded at run time
};

// What the cascade cost model weighs: the bytes of one layer against the fixed cost of one more
// attention level per layer, and the compute of a shared level.
struct AttentionCost {
  int num_layers = 1;  // decoder layers (each runs one attention per step)
  // Attention FLOPs of one query row against one key in one layer (4 * q_heads * head_dim);
  // 0 keeps the cost model's default.
  double flops_per_row_token = 0;
};

// A forward pass queued up to its logits (StepModel::forward_async). Its logits are taken once,
// by sample_async() or take_logits(), before the next forward_async(); a pass dropped untaken
// (an error) leaves nothing behind.
class QueuedPass {
 public:
  virtual ~QueuedPass() = default;
};

class StepModel {
 public:
  virtual ~StepModel() = default;

  // ---- Shape ----
  virtual int vocab_size() const = 0;
  virtual int max_position() const = 0;  // the longest sequence the model supports
  virtual bool on_cuda() const = 0;
  // Bytes of one KV page (all layers, K and V).
  // The dtype of the KV pages (core/dtype.h's name: "f32", "bf16", "fp8_e4m3"); empty when the
  // model does not say (test fakes).
  virtual std::string kv_cache_dtype() const { return {}; }
  // The linear layers' weight dtype ("bf16", "f32", "fp8_e4m3" under --quantization fp8, or a
  // GGML block type kept as stored); empty when the model does not say.
  virtual std::string weight_dtype() const { return {}; }
  virtual int64_t kv_bytes_per_page(int page_size) const = 0;
  // Bytes of one page's sparse-attention bounds across layers (LlamaModel::bounds_bytes_per_page;
  // 0 when sparse attention is off): the memory plan counts them with each page.
  virtual int64_t bounds_bytes_per_page() const { return 0; }
  virtual AttentionCost attention_cost() const { return {}; }

  // ---- Memory, in set-up order ----
  // Allocates what steps of up to max_tokens tokens and max_rows logit rows need, before the KV
  // cache is sized from the memory left.
  virtual void reserve(int /*max_tokens*/, int /*max_rows*/) {}
  // Memory the model's device could still give (Backend::free_memory_bytes; physical memory for
  // a host model).
  virtual int64_t free_memory_bytes() const;
  // Allocates the KV cache; called once before the first forward.
  virtual void allocate_kv(int num_pages, int page_size, KVLayout layout) = 0;
  virtual ModelMemory memory() const { return {}; }
  // The prefix cache's host tier (kv/host_tier.h), only with EngineConfig::host_kv_cache: host
  // memory for num_pages pages of kv_bytes_per_page bytes (after allocate_kv), then, once per step
  // before its forward, the tier's queued copies in order (Backend::copy_kv_pages). The defaults
  // throw: a model without them cannot have a host tier.
  virtual void allocate_host_kv(int num_pages);
  virtual void transfer_kv(std::span<const KVPageCopy> copies);
  // For the memory plan (memory_plan.h): the sampling scratch reserve() allocated (a part of
  // memory().workspace_bytes) and the device memory of the CUDA graphs captured so far; 0 where
  // there are none.
  virtual int64_t sampling_bytes() const { return 0; }
  virtual int64_t graph_pool_bytes() const { return 0; }
  // Device memory a host tier's copies hold besides the pages (Backend::host_tier_device_bytes).
  virtual int64_t host_tier_device_bytes(int64_t /*page_bytes*/) const { return 0; }

  // ---- Steps ----
  // One step: host float32 logits, [in.logit_rows.size(), vocab_size()].
  virtual std::vector<float> forward(const ForwardInput& in) = 0;
  // Device-side sampling (LlamaModel::forward_sample_async): one token per logit row, drawn as
  // Backend::sample_tokens says (argmax where inv_temperature is 0, else a Gumbel-max draw with
  // the row's seed among what top-k / top-p / min-p leave), queued without waiting for the
  // tokens. Its input may name the previous call's tokens by placeholder ids
  // (ForwardInput::token_ids). Only where can_sample_on_device(); the default throws.
  virtual bool can_sample_on_device() const { return false; }
  virtual std::unique_ptr<PendingTokens> forward_sample_async(const ForwardInput& in,
                                                              const std::vector<RowSampling>& rows);
  // The step in two halves, so that the host can work while the device runs the pass: the pass
  // up to its logits, queued without waiting (placeholder ids resolved as forward_sample_async
  // does), then the draw over its logits (as forward_sample_async: queued, ids through the
  // handle; only where can_sample_on_device()) or its host logits (as forward(); waits). The
  // defaults defer the whole pass to the second half: forward_sample_async() or forward() on the
  // same input, so a model with only those works unchanged (without the overlap).
  virtual std::unique_ptr<QueuedPass> forward_async(const ForwardInput& in);
  virtual std::unique_ptr<PendingTokens> sample_async(QueuedPass& pass,
                                                      const std::vector<RowSampling>& rows);
  virtual std::vector<float> take_logits(QueuedPass& pass);
  // The streaming window (EngineConfig::streaming_window): whether forward passes may carry
  // ForwardInput::kv_shifts (cached keys moved to new positions before the pass). Called after
  // allocate_kv; the default throws an Unsupported nc::Error (the model cannot move its keys).
  virtual void check_kv_shifts();
  // Decode batch sizes that run as a captured CUDA graph (each captured by its first step);
  // empty when the model uses no graphs.
  virtual std::vector<int> graph_batch_sizes() const { return {}; }
  // "" while the model can run; else why not (a tensor-parallel group that stopped). Cheap;
  // called between steps (Engine::health_error).
  virtual std::string health_error() { return {}; }
  virtual ModelTimings timings() { return {}; }

  // ---- Sparse attention (EngineConfig::sparse_budget; LlamaModel::set_sparse_options) ----
  // Whether page bounds are kept (ForwardInput::sparse_budgets may be set).
  virtual bool sparse_enabled() const { return false; }
  // Recomputes the bounds of pages whose contents changed outside a pass (the host tier's
  // reloads, after transfer_kv): (page id, valid slots) pairs.
  virtual void refresh_page_bounds(const std::vector<int32_t>& /*page_slots*/) {}
  // Checks that the bounds of the listed (page id, valid slots) pairs equal the min/max of their
  // contents (the engine's check_invariants); throws nc::Error naming the first page that
  // differs. Synchronises.
  virtual void check_page_bounds(const std::vector<int32_t>& /*page_slots*/) {}
  // Pages read and skipped by sparse selection so far (LlamaModel::sparse_counts).
  virtual SparseCounts sparse_counts() const { return {}; }
};

struct StepModelOptions {
  std::string backend = "cpu";  // "cpu" | "cuda"
  bool dummy_weights = false;   // seeded random weights from the config alone
  uint64_t dummy_seed = 0;
  bool cuda_graphs = false;
  int graph_max_batch = 256;
  std::string kv_cache_dtype = "auto";  // kv/kv_dtype.h
  SparseOptions sparse;                 // sparse decode attention (off by default)
  std::string quantization = "auto";    // EngineConfig::quantization
  int tensor_parallel_size = 1;  // EngineConfig::tensor_parallel_size (engine/tp_step_model.h)
  int nnodes = 1;                // EngineConfig::nnodes
  std::string dist_init_addr;    // EngineConfig::dist_init_addr
  int max_model_len = 0;         // EngineConfig::max_model_len (0: the model's maximum)
};

// EngineConfig::quantization ("auto", "none" or "fp8") over the checkpoint's own
// (ModelConfig::quantization); throws for another. In llama_runner.cc.
void apply_quantization_option(const std::string& quantization, ModelConfig& c);

// The real model for a path (.gguf or an HF folder) on a backend ("cpu" | "cuda"). Defined in
// llama_runner.cc.
std::unique_ptr<StepModel> make_llama_step_model(const std::string& path,
                                                 const std::string& backend);
std::unique_ptr<StepModel> make_llama_step_model(const std::string& path,
                                                 const StepModelOptions& options);

}  // namespace nc

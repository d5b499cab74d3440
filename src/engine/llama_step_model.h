// The engine's real model (StepModel, engine/step_model.h) on one backend: LlamaModel with its
// KV cache, graphs, host tier and sampling. make_llama_step_model (llama_runner.cc) builds it from
// a checkpoint or a config; a tensor-parallel rank (engine/tp_step_model.h) builds one over its
// shard and hands it a communicator.
#pragma once
#include <memory>

#include "backend/backend.h"
#include "core/error.h"
#include "engine/step_model.h"
#include "model/llama.h"
#include "model/model_loader.h"

namespace nc {

class LlamaStepModel : public StepModel {
 public:
  // Weights from a checkpoint.
  LlamaStepModel(const LoadedModel& lm, std::unique_ptr<Backend> backend)
      : backend_(std::move(backend)),
        model_(std::make_unique<LlamaModel>(lm.config, lm.weights, *backend_)) {}
  // Seeded random weights.
  LlamaStepModel(const ModelConfig& cfg, uint64_t seed, std::unique_ptr<Backend> backend)
      : backend_(std::move(backend)),
        model_(std::make_unique<LlamaModel>(cfg, RandomWeights{seed}, *backend_)) {}
  // A model built on `backend` already (a tensor-parallel shard).
  LlamaStepModel(std::unique_ptr<Backend> backend, std::unique_ptr<LlamaModel> model)
      : backend_(std::move(backend)), model_(std::move(model)) {}

  LlamaModel& model() { return *model_; }
  Backend& backend() { return *backend_; }

  int vocab_size() const override { return int(model_->config().vocab_size); }
  int max_position() const override { return int(model_->config().max_position); }
  bool on_cuda() const override { return backend_->device() == Device::CUDA; }
  int64_t kv_bytes_per_page(int page_size) const override {
    return model_->kv_bytes_per_page(page_size);
  }
  int64_t bounds_bytes_per_page() const override { return model_->bounds_bytes_per_page(); }
  std::string kv_cache_dtype() const override {
    return std::string(dtype_name(model_->kv_page_dtype()));
  }
  std::string weight_dtype() const override { return model_->linear_weight_dtype(); }
  AttentionCost attention_cost() const override {
    const ModelConfig& c = model_->config();
    return {int(c.num_layers), 4.0 * double(c.num_heads) * double(c.head_dim)};
  }
  void reserve(int max_tokens, int max_rows) override {
    model_->reserve_workspace(max_tokens, max_rows);
    // What the sampler holds now (the workspace reserved it for at least max_rows rows).
    sampling_bytes_ = backend_->reserve_sampling(1, vocab_size());
  }
  int64_t sampling_bytes() const override { return sampling_bytes_; }
  int64_t graph_pool_bytes() const override { return backend_->graph_memory_bytes(); }
  int64_t host_tier_device_bytes(int64_t page_bytes) const override {
    return backend_->host_tier_device_bytes(page_bytes);
  }
  int64_t free_memory_bytes() const override { return backend_->free_memory_bytes(); }
  void allocate_kv(int num_pages, int page_size, KVLayout layout) override {
    kv_ = KVCache{};  // free the old pages first
    kv_ = model_->make_kv_cache(num_pages, page_size, layout);
  }
  void allocate_host_kv(int num_pages) override {
    NC_CHECK(!kv_.layers.empty(), "host kv tier: allocate the KV cache first");
    host_kv_.reset();
    host_kv_ = backend_->alloc_host_buffer(int64_t(num_pages) *
                                           model_->kv_bytes_per_page(kv_.shape.page_size));
  }
  void transfer_kv(std::span<const KVPageCopy> copies) override {
    if (copies.empty()) return;
    NC_CHECK(host_kv_ != nullptr, "host kv tier: no host memory allocated");
    backend_->copy_kv_pages(kv_.layers, copies, *host_kv_);
    // Restored pages have new contents: their bounds are recomputed (whole pages: the tree
    // holds page-aligned blocks), ordered after the copies as the next pass is.
    std::vector<int32_t> restored;
    for (const KVPageCopy& c : copies)
      if (!c.to_host) restored.insert(restored.end(), {c.device_page, kv_.shape.page_size});
    model_->refresh_page_bounds(kv_, restored);
  }
  bool sparse_enabled() const override { return model_->sparse_options().enabled; }
  void refresh_page_bounds(const std::vector<int32_t>& page_slots) override {
    model_->refresh_page_bounds(kv_, page_slots);
  }
  void check_page_bounds(const std::vector<int32_t>& page_slots) override {
    model_->check_page_bounds(kv_, page_slots);
  }
  SparseCounts sparse_counts() const override { return model_->sparse_counts(); }
  ModelMemory memory() const override {
    return {model_->weight_bytes(), model_->workspace_bytes()};
  }
  void check_kv_shifts() override { model_->check_kv_shifts(kv_); }
  std::vector<float> forward(const ForwardInput& in) override { return model_->forward(in, kv_); }
  // On the CPU, Backend::sample_tokens is the reference draw: CPU and CUDA draw alike.
  bool can_sample_on_device() const override { return true; }
  std::unique_ptr<PendingTokens> forward_sample_async(
      const ForwardInput& in, const std::vector<RowSampling>& rows) override {
    return model_->forward_sample_async(in, kv_, rows);
  }
  // The two halves: the pass's device logits are held by the handle until drawn or copied.
  struct Pass : QueuedPass {
    explicit Pass(Tensor l) : logits(std::move(l)) {}
    Tensor logits;  // undefined: the step has no logit rows
    bool taken = false;
  };
  std::unique_ptr<QueuedPass> forward_async(const ForwardInput& in) override {
    return std::make_unique<Pass>(model_->forward_logits(in, kv_));
  }
  std::unique_ptr<PendingTokens> sample_async(QueuedPass& pass,
                                              const std::vector<RowSampling>& rows) override {
    return model_->sample_logits_async(take(pass), rows);
  }
  std::vector<float> take_logits(QueuedPass& pass) override {
    const Tensor logits = take(pass);
    if (!logits.defined()) return {};
    return backend_->to_host_f32(logits);
  }
  // The decoder captures graphs only on CUDA.
  std::vector<int> graph_batch_sizes() const override {
    const GraphOptions& g = model_->graph_options();
    return g.enabled && on_cuda() ? graph_buckets(g.max_batch) : std::vector<int>{};
  }
  ModelTimings timings() override {
    return {backend_->device_busy_seconds(), model_->host_prep_seconds(), model_->num_graph_steps(),
            backend_->kernel_builds()};
  }

 private:
  static Tensor take(QueuedPass& pass) {
    auto* p = dynamic_cast<Pass*>(&pass);
    NC_CHECK(p != nullptr && !p->taken, "model: a pass's logits taken twice or from another model");
    p->taken = true;
    return std::move(p->logits);
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  KVCache kv_;
  std::unique_ptr<HostBuffer> host_kv_;  // before backend_ goes (pinned memory on CUDA)
  int64_t sampling_bytes_ = 0;
};

// The options' graphs, KV dtype and sparse attention, set on a model before its first pass.
void configure_llama_model(LlamaModel& model, const StepModelOptions& options);

}  // namespace nc

// The engine's real model: LlamaModel on a backend, loaded with load_model; and Engine's
// constructor from a config (model path -> model + tokenizer).
#include <filesystem>

#include "backend/backend.h"
#include "core/error.h"
#include "engine/step_model.h"
#include "model/llama.h"
#include "model/model_loader.h"

namespace nc {
namespace {

class LlamaStepModel : public StepModel {
 public:
  LlamaStepModel(const LoadedModel& lm, std::unique_ptr<Backend> backend)
      : backend_(std::move(backend)),
        model_(std::make_unique<LlamaModel>(lm.config, lm.weights, *backend_)) {}

  int vocab_size() const override { return int(model_->config().vocab_size); }
  int max_position() const override { return int(model_->config().max_position); }
  bool on_cuda() const override { return backend_->device() == Device::CUDA; }
  int64_t kv_bytes_per_page(int page_size) const override {
    return model_->kv_bytes_per_page(page_size);
  }
  void allocate_kv(int num_pages, int page_size, KVLayout layout) override {
    kv_ = model_->make_kv_cache(num_pages, page_size, layout);
  }
  std::vector<float> forward(const ForwardInput& in) override { return model_->forward(in, kv_); }

 private:
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  KVCache kv_;
};

std::string model_path(const EngineConfig& cfg) {
  const std::string path = cfg.model.empty() ? EngineConfig::default_model_path() : cfg.model;
  NC_CHECK(std::filesystem::exists(path), "model '{}' not found{}", path,
           cfg.model.empty() ? " (run tools/setup.sh to fetch the default model)" : "");
  return path;
}

}  // namespace

std::unique_ptr<StepModel> make_llama_step_model(const std::string& path,
                                                 const std::string& backend) {
  NC_CHECK(backend == "cpu" || backend == "cuda", "backend '{}': expected cpu or cuda", backend);
  std::unique_ptr<Backend> b = backend == "cuda" ? make_cuda_backend(0) : make_cpu_backend();
  const LoadedModel lm = load_model(path);  // freed once the weights are uploaded
  return std::make_unique<LlamaStepModel>(lm, std::move(b));
}

Engine::Engine(const EngineConfig& config)
    : Engine(config, make_llama_step_model(model_path(config), config.backend),
             make_text_codec(model_path(config))) {}

}  // namespace nc

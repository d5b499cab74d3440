// The engine's real model: LlamaModel on a backend, loaded with load_model (or made from the
// config with seeded random weights); and Engine's constructor from a config (model path ->
// model + tokenizer).
#include <filesystem>

#include "backend/backend.h"
#include "core/error.h"
#include "engine/llama_step_model.h"
#include "engine/memory_plan.h"
#include "engine/step_model.h"
#include "engine/tp_step_model.h"
#include "kv/page_pool.h"
#include "model/llama.h"
#include "model/model_loader.h"

namespace nc {
namespace {

std::string model_path(const EngineConfig& cfg) {
  host_kv_cache_bytes(cfg);  // a host tier larger than the machine fails before anything loads
  const std::string path = cfg.model.empty() ? EngineConfig::default_model_path() : cfg.model;
  NC_CHECK_AS(ErrorKind::NotFound, std::filesystem::exists(path), "model '{}' not found{}", path,
              cfg.model.empty() ? " (run tools/setup.sh to fetch the default model)" : "");
  return path;
}

StepModelOptions step_model_options(const EngineConfig& cfg) {
  StepModelOptions o;
  o.backend = cfg.backend;
  o.dummy_weights = parse_load_format(cfg.load_format) == LoadFormat::Dummy;
  o.dummy_seed = cfg.dummy_seed;
  o.cuda_graphs = cfg.enable_cuda_graphs;
  o.graph_max_batch = std::min(cfg.graph_max_batch, cfg.max_num_seqs);
  o.kv_cache_dtype = cfg.kv_cache_dtype;
  o.sparse = SparseOptions{cfg.sparse_budget > 0, cfg.sparse_sink_pages, cfg.sparse_window,
                           cfg.sparse_dense_layers, cfg.sparse_per_head};
  o.quantization = cfg.quantization;
  o.tensor_parallel_size = cfg.tensor_parallel_size;
  o.nnodes = cfg.nnodes;
  o.dist_init_addr = cfg.dist_init_addr;
  o.max_model_len = cfg.max_model_len;
  return o;
}

std::unique_ptr<TextCodec> codec_for(const EngineConfig& cfg) {
  const std::string path = model_path(cfg);
  if (parse_load_format(cfg.load_format) == LoadFormat::Dummy)
    return make_number_codec(int(load_model_config(path).vocab_size));
  return make_text_codec(path);
}

}  // namespace

int64_t StepModel::free_memory_bytes() const {
  return physical_memory_bytes();
}

void StepModel::allocate_host_kv(int) {
  fail("this model has no host KV tier");
}

void StepModel::transfer_kv(std::span<const KVPageCopy>) {
  fail("this model has no host KV tier");
}

void StepModel::check_kv_shifts() {
  fail_as(ErrorKind::Unsupported,
          "streaming window: this model cannot move its cached keys to new positions");
}

std::unique_ptr<PendingTokens> StepModel::forward_sample_async(const ForwardInput&,
                                                               const std::vector<RowSampling>&) {
  fail("this model cannot sample on the device");
}

namespace {

// The default halves (step_model.h): the input kept, the whole pass run by the second half.
struct DeferredPass : QueuedPass {
  explicit DeferredPass(const ForwardInput& i) : in(i) {}
  ForwardInput in;
  bool taken = false;
};

DeferredPass& take_deferred(QueuedPass& pass) {
  auto* p = dynamic_cast<DeferredPass*>(&pass);
  NC_CHECK(p != nullptr && !p->taken, "model: a pass's logits taken twice or from another model");
  p->taken = true;
  return *p;
}

}  // namespace

std::unique_ptr<QueuedPass> StepModel::forward_async(const ForwardInput& in) {
  return std::make_unique<DeferredPass>(in);
}

std::unique_ptr<PendingTokens> StepModel::sample_async(QueuedPass& pass,
                                                       const std::vector<RowSampling>& rows) {
  return forward_sample_async(take_deferred(pass).in, rows);
}

std::vector<float> StepModel::take_logits(QueuedPass& pass) {
  return forward(take_deferred(pass).in);
}

void apply_quantization_option(const std::string& q, ModelConfig& c) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, q == "auto" || q == "none" || q == "fp8",
              "quantization '{}': expected auto, none or fp8", q);
  if (q != "auto") c.quantization = q;
}

namespace {

// The options that change one model's config: its quantization, and the positions served (the
// rope tables cover max_model_len, not a 1M-position checkpoint's all).
void apply_step_model_options(const StepModelOptions& o, ModelConfig& c) {
  apply_quantization_option(o.quantization, c);
  c.max_served_position = std::max(o.max_model_len, 0);
}

}  // namespace

std::unique_ptr<StepModel> make_llama_step_model(const std::string& path,
                                                 const StepModelOptions& o) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, o.backend == "cpu" || o.backend == "cuda",
              "backend '{}': expected cpu or cuda", o.backend);
  NC_CHECK_AS(ErrorKind::InvalidArgument, o.tensor_parallel_size >= 1,
              "tensor parallel size {} (must be >= 1)", o.tensor_parallel_size);
  if (o.tensor_parallel_size > 1)
    return make_tensor_parallel_step_model(path, o, o.tensor_parallel_size);
  std::unique_ptr<Backend> b = o.backend == "cuda" ? make_cuda_backend(0) : make_cpu_backend();
  std::unique_ptr<LlamaStepModel> m;
  if (o.dummy_weights) {
    ModelConfig c = load_model_config(path);
    apply_step_model_options(o, c);
    m = std::make_unique<LlamaStepModel>(c, o.dummy_seed, std::move(b));
  } else {
    LoadedModel lm = load_model(path);  // freed once the weights are uploaded
    apply_step_model_options(o, lm.config);
    m = std::make_unique<LlamaStepModel>(lm, std::move(b));
  }
  configure_llama_model(m->model(), o);
  return m;
}

void configure_llama_model(LlamaModel& m, const StepModelOptions& o) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, o.graph_max_batch >= 1 || !o.cuda_graphs,
              "graph_max_batch must be >= 1, got {}", o.graph_max_batch);
  m.set_graph_options(GraphOptions{o.cuda_graphs, std::max(o.graph_max_batch, 1)});
  m.set_kv_cache_dtype(parse_kv_cache_dtype(o.kv_cache_dtype));
  m.set_sparse_options(o.sparse);
}

std::unique_ptr<StepModel> make_llama_step_model(const std::string& path,
                                                 const std::string& backend) {
  StepModelOptions o;
  o.backend = backend;
  return make_llama_step_model(path, o);
}

std::unique_ptr<StepModel> make_step_model(const EngineConfig& cfg) {
  return make_llama_step_model(model_path(cfg), step_model_options(cfg));
}

void run_tensor_parallel_rank(const EngineConfig& cfg, int rank) {
  run_tensor_parallel_worker(model_path(cfg), step_model_options(cfg), rank);
}

Engine::Engine(const EngineConfig& config)
    : Engine(config, make_step_model(config), codec_for(config)) {}

}  // namespace nc

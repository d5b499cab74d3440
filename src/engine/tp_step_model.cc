// Tensor parallelism in the engine (engine/tp_step_model.h).
#include "engine/tp_step_model.h"

#include <chrono>
#include <optional>
#include <thread>

#include "backend/backend.h"
#include "core/error.h"
#include "dist/thread_group.h"
#include "kv/kv_dtype.h"
#include "model/forward_wire.h"
#include "model/llama.h"
#include "model/model_loader.h"
#include "model/tensor_parallel.h"

namespace nc {
namespace {

// The longest one rank waits for the others in a collective: far beyond any step, short enough
// that a dead rank is reported, not waited for forever.
constexpr std::chrono::seconds kCollectiveTimeout{120};

class TensorParallelStepModel final : public StepModel {
 public:
  struct Rank {
    std::unique_ptr<Backend> backend;
    std::unique_ptr<Communicator> comm;
    std::unique_ptr<LlamaModel> model;
    KVCache kv;
    std::vector<float> logits;
  };

  TensorParallelStepModel(std::shared_ptr<ThreadGroup> group, std::vector<Rank> ranks)
      : group_(std::move(group)), ranks_(std::move(ranks)) {}

  int vocab_size() const override { return int(first().config().vocab_size); }
  int max_position() const override { return int(first().config().max_position); }
  bool on_cuda() const override { return false; }
  std::string kv_cache_dtype() const override {
    return std::string(dtype_name(first().kv_page_dtype()));
  }
  std::string weight_dtype() const override { return first().linear_weight_dtype(); }
  // Every rank's share of a page (the ranks live in this process's memory).
  int64_t kv_bytes_per_page(int page_size) const override {
    int64_t bytes = 0;
    for (const Rank& r : ranks_) bytes += r.model->kv_bytes_per_page(page_size);
    return bytes;
  }
  AttentionCost attention_cost() const override {
    const ModelConfig& c = first().config();
    return {int(c.num_layers), 4.0 * double(c.num_heads) * double(c.head_dim)};
  }
  void reserve(int max_tokens, int max_rows) override {
    for (Rank& r : ranks_) r.model->reserve_workspace(max_tokens, max_rows);
  }
  void allocate_kv(int num_pages, int page_size, KVLayout layout) override {
    for (Rank& r : ranks_) {
      r.kv = KVCache{};
      r.kv = r.model->make_kv_cache(num_pages, page_size, layout);
    }
  }
  ModelMemory memory() const override {
    ModelMemory m;
    for (const Rank& r : ranks_) {
      m.weight_bytes += r.model->weight_bytes();
      m.workspace_bytes += r.model->workspace_bytes();
    }
    return m;
  }
  void check_kv_shifts() override {
    for (Rank& r : ranks_) r.model->check_kv_shifts(r.kv);
  }
  // Rank 0 holds the scheduler's plan and sends it to the others as bytes (model/forward_wire.h),
  // as it would to other processes; they run what they received.
  std::vector<float> forward(const ForwardInput& in) override {
    const std::vector<std::byte> plan = encode_forward_input(in);
    on_all_ranks([&](Rank& r) {
      const bool root = r.comm->rank() == 0;
      std::vector<std::byte> bytes = root ? plan : std::vector<std::byte>{};
      r.comm->broadcast(bytes, 0);
      r.logits = r.model->forward(root ? in : decode_forward_input(bytes), r.kv);
    });
    return std::move(ranks_[0].logits);
  }

 private:
  const LlamaModel& first() const { return *ranks_[0].model; }

  // Runs fn on every rank at once, rank 0 on the calling thread. A rank that throws stops the
  // group (the others' collectives then throw too); the first failure is rethrown.
  template <typename F>
  void on_all_ranks(F fn) {
    const std::string stopped = group_->failure();
    NC_CHECK(stopped.empty(), "tensor parallel group stopped earlier: {}", stopped);
    std::vector<std::string> errors(ranks_.size());
    const auto run = [&](size_t i) {
      try {
        fn(ranks_[i]);
      } catch (const std::exception& e) {
        errors[i] = e.what();
        ranks_[i].comm->abort(e.what());
      }
    };
    std::vector<std::thread> threads;
    for (size_t i = 1; i < ranks_.size(); ++i) threads.emplace_back(run, i);
    run(0);
    for (std::thread& t : threads) t.join();
    const std::string failure = group_->failure();
    for (size_t i = 0; i < errors.size(); ++i)
      NC_CHECK(errors[i].empty(), "tensor parallel: {}",
               failure.empty() ? fmt::format("rank {}: {}", i, errors[i]) : failure);
  }

  std::shared_ptr<ThreadGroup> group_;
  std::vector<Rank> ranks_;
};

void check_options(const StepModelOptions& o, int size) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, size >= 2 && size <= 64,
              "tensor parallel size {} (2..64 here; 1 is the plain model)", size);
  NC_CHECK_AS(ErrorKind::Unsupported, o.backend == "cpu",
              "tensor parallelism on the {} backend needs NCCL ranks, not built yet (the cpu "
              "backend runs ranks as threads)",
              o.backend);
  NC_CHECK_AS(ErrorKind::Unsupported, !o.sparse.enabled,
              "sparse attention with tensor parallelism is not supported yet");
}

}  // namespace

std::unique_ptr<StepModel> make_tensor_parallel_step_model(const std::string& path,
                                                           const StepModelOptions& o, int size) {
  check_options(o, size);
  std::optional<LoadedModel> lm;
  ModelConfig full;
  if (o.dummy_weights) {
    full = load_model_config(path);
  } else {
    lm = load_model(path);  // freed once every rank has its shard
    full = lm->config;
  }
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              o.quantization == "auto" || o.quantization == "none" || o.quantization == "fp8",
              "quantization '{}': expected auto, none or fp8", o.quantization);
  if (o.quantization != "auto") full.quantization = o.quantization;  // fp8: refused below
  (void)shard_config(full, 0, size);  // refuses, by name, a model that does not split
  auto group = ThreadGroup::make(size, kCollectiveTimeout);
  std::vector<TensorParallelStepModel::Rank> ranks;
  for (int r = 0; r < size; ++r) {
    TensorParallelStepModel::Rank rank;
    rank.backend = make_cpu_backend();
    rank.comm = group->communicator(r);
    const ModelConfig cfg = shard_config(full, r, size);
    rank.model = lm ? std::make_unique<LlamaModel>(cfg, shard_weights(full, lm->weights, r, size),
                                                   *rank.backend)
                    : std::make_unique<LlamaModel>(cfg, RandomWeights{o.dummy_seed + uint64_t(r)},
                                                   *rank.backend);
    rank.model->set_tensor_parallel(rank.comm.get());
    rank.model->set_kv_cache_dtype(parse_kv_cache_dtype(o.kv_cache_dtype));
    ranks.push_back(std::move(rank));
  }
  return std::make_unique<TensorParallelStepModel>(std::move(group), std::move(ranks));
}

}  // namespace nc

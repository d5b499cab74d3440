// Tensor parallelism in the engine (engine/tp_step_model.h).
#include "engine/tp_step_model.h"

#include <chrono>
#include <cstring>
#include <thread>

#include "backend/nccl.h"
#include "core/error.h"
#include "dist/socket_group.h"
#include "dist/thread_group.h"
#include "engine/tp_rank.h"
#include "model/tensor_parallel.h"

namespace nc {
namespace {

// The longest one rank waits for the others in a collective: far beyond any step, short enough
// that a dead rank is reported, not waited for forever.
constexpr std::chrono::seconds kCollectiveTimeout{120};
// The longest the ranks' processes wait for each other to start and load their shards.
constexpr std::chrono::seconds kJoinTimeout{900};
// How long a rank that cannot join tries to tell rank 0 so.
constexpr std::chrono::seconds kReportTime{5};

// Rank 0's view of the group: its own shard (a LlamaStepModel) behind the StepModel interface,
// every call that the other ranks must repeat sent to them first as a command (tp_rank.h).
class TensorParallelStepModel final : public StepModel {
 public:
  struct Workers {  // ranks 1.. as threads of this process (the cpu backend); none for processes
    std::vector<std::unique_ptr<Communicator>> comms;
    std::vector<std::unique_ptr<StepModel>> shards;
    std::vector<std::thread> threads;
  };

  // ranks_here: the ranks whose shards share this machine's memory (rank 0's included).
  TensorParallelStepModel(std::unique_ptr<Communicator> comm, std::unique_ptr<LlamaStepModel> shard,
                          Workers workers, int ranks_here)
      : shard_(std::move(shard)),
        comm_(std::move(comm)),
        workers_(std::move(workers)),
        ranks_here_(ranks_here) {
    for (size_t i = 0; i < workers_.shards.size(); ++i)
      workers_.threads.emplace_back([this, i] {
        try {
          serve_tp_rank(*workers_.shards[i], *workers_.comms[i]);
        } catch (const std::exception&) {  // the group knows (the rank aborted it)
        }
      });
  }
  ~TensorParallelStepModel() override {
    try {
      send(tp_stop_command());
    } catch (const std::exception&) {  // a stopped group: its ranks have left already
    }
    for (std::thread& t : workers_.threads) t.join();
  }

  int vocab_size() const override { return shard_->vocab_size(); }
  int max_position() const override { return shard_->max_position(); }
  bool on_cuda() const override { return shard_->on_cuda(); }
  std::string kv_cache_dtype() const override { return shard_->kv_cache_dtype(); }
  std::string weight_dtype() const override { return shard_->weight_dtype(); }
  // A page is a share on every rank: they add up over the ranks that share this machine's
  // memory (the cpu backend: this node's ranks); on CUDA each GPU holds its own share.
  int64_t kv_bytes_per_page(int page_size) const override {
    return shard_->kv_bytes_per_page(page_size) * ranks_here_;
  }
  AttentionCost attention_cost() const override { return shard_->attention_cost(); }
  int64_t free_memory_bytes() const override { return shard_->free_memory_bytes(); }
  void reserve(int max_tokens, int max_rows) override {
    send(tp_reserve_command(max_tokens, max_rows));
    shard_->reserve(max_tokens, max_rows);
  }
  void allocate_kv(int num_pages, int page_size, KVLayout layout) override {
    send(tp_allocate_kv_command(num_pages, page_size, layout));
    shard_->allocate_kv(num_pages, page_size, layout);
  }
  // Rank 0's shard (the others' are alike), times the ranks that share this memory.
  ModelMemory memory() const override {
    ModelMemory m = shard_->memory();
    return {m.weight_bytes * ranks_here_, m.workspace_bytes * ranks_here_};
  }
  int64_t graph_pool_bytes() const override { return shard_->graph_pool_bytes(); }
  void check_kv_shifts() override { shard_->check_kv_shifts(); }
  // Rank 0 holds the scheduler's plan and sends it to the others as bytes; they run what they
  // received. Its logits (the whole vocabulary, gathered in the pass) are sampled on the host:
  // the device draw would need the drawn tokens sent to the other ranks for the next step.
  std::vector<float> forward(const ForwardInput& in) override {
    send(tp_forward_command(in));
    return unfailed(guarded([&] { return shard_->forward(in); }));
  }
  std::unique_ptr<QueuedPass> forward_async(const ForwardInput& in) override {
    send(tp_forward_command(in));
    return guarded([&] { return shard_->forward_async(in); });
  }
  // A group that failed during the pass (an NCCL group aborted by its watchdog) may have left
  // the logits unfinished: an error, never those logits.
  std::vector<float> take_logits(QueuedPass& pass) override {
    return unfailed(guarded([&] { return shard_->take_logits(pass); }));
  }
  std::vector<int> graph_batch_sizes() const override { return shard_->graph_batch_sizes(); }
  std::string health_error() override { return comm_->failure(); }
  ModelTimings timings() override { return shard_->timings(); }

 private:
  void send(std::vector<std::byte> bytes) { comm_->broadcast(bytes, 0); }
  // A pass's logits, unless the group failed while it ran.
  std::vector<float> unfailed(std::vector<float> logits) {
    const std::string failed = comm_->failure();
    NC_CHECK(failed.empty(), "tensor parallel: {}", failed);
    return logits;
  }
  // A failure of rank 0's own pass stops the group, so the other ranks do not wait for it.
  template <typename F>
  auto guarded(F fn) -> decltype(fn()) {
    try {
      return fn();
    } catch (const std::exception& e) {
      comm_->abort(e.what());
      throw;
    }
  }

  // Destroyed in reverse: the workers' threads, then the communicator (an NCCL group ends before
  // the backend whose teardown waits for its stream), then rank 0's shard.
  std::unique_ptr<LlamaStepModel> shard_;
  std::unique_ptr<Communicator> comm_;
  Workers workers_;
  int ranks_here_;
};

void check_options(const StepModelOptions& o, int size) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, size >= 2 && size <= 64,
              "tensor parallel size {} (2..64 here; 1 is the plain model)", size);
  NC_CHECK_AS(ErrorKind::InvalidArgument, o.nnodes >= 1 && size % o.nnodes == 0,
              "tensor parallel size {} over {} nodes: each node must run the same number of ranks",
              size, o.nnodes);
  NC_CHECK_AS(ErrorKind::InvalidArgument, o.backend == "cpu" || o.backend == "cuda",
              "backend '{}': expected cpu or cuda", o.backend);
  NC_CHECK_AS(ErrorKind::Unsupported, o.backend == "cpu" || nccl_built(),
              "tensor parallelism on the {} backend needs NCCL, and this build has none (a CUDA "
              "build with tools/setup.sh's NCCL header; the cpu backend runs ranks as threads)",
              o.backend);
  NC_CHECK_AS(ErrorKind::Unsupported, !o.sparse.enabled,
              "sparse attention with tensor parallelism is not supported yet");
}

// Ranks as processes: on CUDA always (one per GPU), on the cpu backend with several nodes or an
// address to meet at.
bool ranks_are_processes(const StepModelOptions& o) {
  return o.backend == "cuda" || o.nnodes > 1 || !o.dist_init_addr.empty();
}

HostPort group_address(const StepModelOptions& o) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, !o.dist_init_addr.empty(),
              "tensor parallelism over processes needs dist_init_addr (host:port of rank 0; "
              "`nanocascade` sets one for a single machine)");
  return parse_host_port(o.dist_init_addr);
}

std::unique_ptr<Backend> rank_backend(const StepModelOptions& o, int rank, int size) {
  const int local_rank = rank % (size / o.nnodes);  // this machine's GPU
  return o.backend == "cuda" ? make_cuda_backend(local_rank) : make_cpu_backend();
}

// The rank's collectives: the socket group itself on the cpu backend, NCCL over it on CUDA.
std::unique_ptr<Communicator> tensor_comm(const StepModelOptions& o, Backend& backend,
                                          std::unique_ptr<Communicator> control) {
  if (o.backend == "cpu") return control;
  std::vector<std::byte> id(sizeof(NcclUniqueId));
  if (control->rank() == 0) {
    const NcclUniqueId made = nccl_unique_id();
    std::memcpy(id.data(), made.data(), made.size());
  }
  control->broadcast(id, 0);
  NcclUniqueId got{};
  NC_CHECK(id.size() == got.size(), "tensor parallel: NCCL id of {} bytes", id.size());
  std::memcpy(got.data(), id.data(), got.size());
  return make_nccl_communicator(backend, std::move(control), got);
}

std::unique_ptr<StepModel> make_thread_group(const TpSource& src, const StepModelOptions& o,
                                             int size) {
  auto group = ThreadGroup::make(size, kCollectiveTimeout);
  std::unique_ptr<Communicator> comm0 = group->communicator(0);
  auto shard0 = make_tp_shard(src, o, 0, size, make_cpu_backend());
  shard0->model().set_tensor_parallel(comm0.get());
  TensorParallelStepModel::Workers workers;
  for (int r = 1; r < size; ++r) {
    workers.comms.push_back(group->communicator(r));
    auto shard = make_tp_shard(src, o, r, size, make_cpu_backend());
    shard->model().set_tensor_parallel(workers.comms.back().get());
    workers.shards.push_back(std::move(shard));
  }
  return std::make_unique<TensorParallelStepModel>(std::move(comm0), std::move(shard0),
                                                   std::move(workers), /*ranks_here=*/size);
}

}  // namespace

std::unique_ptr<StepModel> make_tensor_parallel_step_model(const std::string& path,
                                                           const StepModelOptions& o, int size) {
  check_options(o, size);
  TpSource src = load_tp_source(path, o);
  (void)shard_config(src.full, 0, size);  // refuses, by name, a model that does not split
  if (!ranks_are_processes(o)) return make_thread_group(src, o, size);
  // Rank 0 of processes: this machine's other ranks, and other machines', join at the address.
  const HostPort at = group_address(o);
  auto listener = std::make_unique<TcpListener>(at);  // before loading: the others may connect
  // Each rank loads its shard, then joins: a slow load is not a collective's timeout.
  auto shard = make_tp_shard(src, o, 0, size, rank_backend(o, 0, size));
  src = TpSource{};  // the checkpoint's mapping, now that the shard holds its copy
  std::unique_ptr<Communicator> comm =
      tensor_comm(o, shard->backend(),
                  make_socket_root(std::move(listener), size, kJoinTimeout, kCollectiveTimeout));
  shard->model().set_tensor_parallel(comm.get());
  // On the cpu backend this node's ranks (processes) share its memory; a GPU holds one rank's.
  const int ranks_here = o.backend == "cpu" ? size / o.nnodes : 1;
  return std::make_unique<TensorParallelStepModel>(std::move(comm), std::move(shard),
                                                   TensorParallelStepModel::Workers{}, ranks_here);
}

void run_tensor_parallel_worker(const std::string& path, const StepModelOptions& o, int rank) {
  const int size = o.tensor_parallel_size;
  check_options(o, size);
  NC_CHECK_AS(ErrorKind::InvalidArgument, rank >= 1 && rank < size,
              "tensor parallel rank {} outside [1, {})", rank, size);
  const HostPort root = group_address(o);
  std::unique_ptr<LlamaStepModel> shard;
  try {
    shard = make_tp_shard(load_tp_source(path, o), o, rank, size, rank_backend(o, rank, size));
  } catch (const std::exception& e) {  // rank 0 would wait for this rank until kJoinTimeout
    report_join_failure(root, rank, e.what(), kReportTime);
    throw;
  }
  std::unique_ptr<Communicator> comm = tensor_comm(
      o, shard->backend(), make_socket_peer(root, rank, size, kJoinTimeout, kCollectiveTimeout));
  shard->model().set_tensor_parallel(comm.get());
  serve_tp_rank(*shard, *comm);  // comm goes first (declared last): NCCL's group before the
                                 // backend whose teardown waits for its stream
}

}  // namespace nc

// The CUDA backend: bf16 weights and activations, one stream, FlashInfer kernels for attention,
// norms, rope and activation, cuBLASLt for GEMM. Everything is enqueued asynchronously; only
// to_host_f32() and synchronize() wait for the device.
#include "backend/cuda/cuda_backend.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "backend/cuda/kernels.h"
#include "core/error.h"
#include "kv/page_pool.h"

namespace nc {
namespace {

void cuda_check(cudaError_t e, const char* what) {
  NC_CHECK(e == cudaSuccess, "cuda backend: {}: {}", what, cudaGetErrorString(e));
}

void cublas_check(cublasStatus_t s, const char* what) {
  NC_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuda backend: {}: cuBLAS status {}", what, int(s));
}

// Runs a kernels.h call, turning its std::runtime_error into nc::Error.
template <typename F>
void k_call(F&& f) {
  try {
    f();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("cuda backend: {}", e.what());
  }
}

size_t align_up(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

// Page-locked staging plus a device buffer of the same size, for one plan's metadata (or, host
// side only, sampled ids on their way back). The event marks the end of the last asynchronous
// copy out of or into the staging memory: the host must not touch the staging memory again
// before it has completed.
struct Staging {
  void* host = nullptr;
  void* dev = nullptr;
  size_t capacity = 0;
  cudaEvent_t copied = nullptr;
};

// One level of a graph-safe plan: its metadata's offsets in the slot's staging buffer.
struct GraphLevel {
  size_t qo_indptr = 0, kv_indptr = 0, last_page_len = 0, kv_indices = 0;
  size_t int_ws = 0, int_ws_bytes = 0;
  cuda::PlanInfo info;  // of the slot's first plan: later plans must match it
};

// A graph-safe plan's home: metadata at fixed offsets of one staging buffer (the levels'
// kv_indices last, so a step copies only what it uses) and the own level's split-KV scratch.
// Graphs captured with a plan of this slot read these addresses. levels.back() is the own
// level (FlashInfer's decode); the others are cascade shared levels (FA2 prefill, non-causal,
// padded to `batch` entries).
struct GraphSlot {
  int batch = 0;
  int max_pages = 0;
  int num_qo_heads = 0, num_kv_heads = 0, head_dim = 0, page_size = 0;
  Staging staging;
  std::vector<GraphLevel> levels;
  size_t batch_indices = 0, positions = 0;
  size_t head_bytes = 0;  // bytes before the first level's kv_indices
  void* float_ws = nullptr;
  size_t float_bytes = 0;
  size_t shared_float_bytes = 0;  // split-KV scratch of the shared levels (in graph_scratch)
};

// State shared by the backend, its tensors' deleters and its plans (which may outlive it).
struct Context {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* lt_workspace = nullptr;
  size_t lt_workspace_bytes = size_t(32) << 20;
  void* attn_float_ws = nullptr;  // FlashInfer's split-kv scratch, shared (runs are stream-ordered)
  size_t attn_float_bytes = 0;
  // Cascade levels overlapped with the own level: a second stream, its own split-kv scratch
  // (both streams' kernels run at once), and the events that fork and join it.
  cudaStream_t side = nullptr;
  void* side_float_ws = nullptr;
  size_t side_float_bytes = 0;
  cudaEvent_t fork = nullptr, join = nullptr;
  std::vector<Staging> free_staging;
  std::mutex mu;                   // guards free_staging (plans may be destroyed on other threads)
  std::map<int, GraphSlot> slots;  // fixed metadata buffers of graph-safe plans
  std::map<int, cudaGraphExec_t> graphs;  // captured graphs by key
  // Scratch of multi-level graph plans (shared levels' split-KV partials, cascade merge states),
  // shared by all slots (graphs replay one at a time on the main stream). It only grows; a
  // replaced buffer stays allocated while graphs captured with it may replay (retired).
  void* graph_scratch = nullptr;
  size_t graph_scratch_bytes = 0;
  std::vector<void*> retired_scratch;
  bool capturing = false;
  // Forward-pass timing: (begin, end) event pairs not yet read, and spare events.
  std::vector<std::pair<cudaEvent_t, cudaEvent_t>> pending_passes;
  std::vector<cudaEvent_t> spare_events;
  cudaEvent_t pass_begin = nullptr;
  double busy_s = 0;

  ~Context() {
    cudaSetDevice(device);
    cudaStreamSynchronize(stream);
    if (side) cudaStreamSynchronize(side);
    for (auto& [key, g] : graphs) cudaGraphExecDestroy(g);
    for (auto& [key, slot] : slots) release_slot(slot);
    free_retired_scratch();
    if (graph_scratch) cudaFree(graph_scratch);
    for (auto& [a, b] : pending_passes) cudaEventDestroy(a), cudaEventDestroy(b);
    for (cudaEvent_t e : spare_events) cudaEventDestroy(e);
    if (pass_begin) cudaEventDestroy(pass_begin);
    for (Staging& s : free_staging) release(s);
    if (attn_float_ws) cudaFree(attn_float_ws);
    if (side_float_ws) cudaFree(side_float_ws);
    if (fork) cudaEventDestroy(fork);
    if (join) cudaEventDestroy(join);
    if (side) cudaStreamDestroy(side);
    if (lt_workspace) cudaFree(lt_workspace);
    if (lt) cublasLtDestroy(lt);
    if (stream) cudaStreamDestroy(stream);
  }

  void free_retired_scratch() {
    for (void* p : retired_scratch) cudaFree(p);
    retired_scratch.clear();
  }

  static void release_slot(GraphSlot& g) {
    release(g.staging);
    if (g.float_ws) cudaFree(g.float_ws);
    g = GraphSlot{};
  }

  cudaEvent_t event() {
    if (!spare_events.empty()) {
      cudaEvent_t e = spare_events.back();
      spare_events.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    cuda_check(cudaEventCreate(&e), "cudaEventCreate");
    return e;
  }

  // Adds the device time of the passes that have finished to busy_s, in order, without waiting
  // (an asynchronous engine plans the next step while one runs). wait_all: also the others.
  void collect_passes(bool wait_all = false) {
    size_t done = 0;
    for (; done < pending_passes.size(); ++done) {
      auto [a, b] = pending_passes[done];
      const cudaError_t q = wait_all ? cudaEventSynchronize(b) : cudaEventQuery(b);
      if (q == cudaErrorNotReady) {
        (void)cudaGetLastError();  // not an error: the pass is still running
        break;
      }
      float ms = 0;
      if (q == cudaSuccess && cudaEventElapsedTime(&ms, a, b) == cudaSuccess)
        busy_s += double(ms) * 1e-3;
      spare_events.push_back(a);
      spare_events.push_back(b);
    }
    pending_passes.erase(pending_passes.begin(), pending_passes.begin() + std::ptrdiff_t(done));
  }

  static void release(Staging& s) {
    if (s.copied) cudaEventSynchronize(s.copied), cudaEventDestroy(s.copied);
    if (s.host) cudaFreeHost(s.host);
    if (s.dev) cudaFree(s.dev);
    s = Staging{};
  }

  // A staging buffer of at least `bytes`, whose last copy has completed.
  Staging acquire_staging(size_t bytes) {
    Staging s;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto best = free_staging.end();
      for (auto it = free_staging.begin(); it != free_staging.end(); ++it) {
        if (it->capacity >= bytes && (best == free_staging.end() || it->capacity < best->capacity))
          best = it;
      }
      if (best != free_staging.end()) {
        s = *best;
        free_staging.erase(best);
      }
    }
    if (s.capacity == 0) {
      s.capacity = std::max(align_up(bytes, 4096), size_t(64) << 10);
      cuda_check(cudaHostAlloc(&s.host, s.capacity, cudaHostAllocDefault), "cudaHostAlloc");
      cuda_check(cudaMalloc(&s.dev, s.capacity), "cudaMalloc (plan metadata)");
      cuda_check(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming), "cudaEventCreate");
    } else {
      // Never rewrite pinned memory whose asynchronous copy has not run yet.
      cuda_check(cudaEventSynchronize(s.copied), "waiting for a plan's metadata copy");
    }
    return s;
  }

  void return_staging(Staging s) {
    std::lock_guard<std::mutex> lock(mu);
    free_staging.push_back(s);
    // Keep the pool small: a few plans and sampled-id copies are alive at a time.
    while (free_staging.size() > 8) {
      release(free_staging.front());
      free_staging.erase(free_staging.begin());
    }
  }

  static void ensure_float_ws(void** ws, size_t* have, size_t bytes) {
    if (bytes <= *have) return;
    // cudaFree waits for the device, so no queued kernel still uses the old buffer.
    if (*ws) cuda_check(cudaFree(*ws), "cudaFree");
    *ws = nullptr;
    *have = std::max(align_up(bytes, size_t(1) << 20), size_t(32) << 20);
    cuda_check(cudaMalloc(ws, *have), "cudaMalloc (attention workspace)");
  }

  void ensure_side_stream() {
    if (side) return;
    cuda_check(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda_check(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming), "cudaEventCreate");
    cuda_check(cudaEventCreateWithFlags(&join, cudaEventDisableTiming), "cudaEventCreate");
  }
};

// Sampled ids copied to a pinned buffer behind the step's kernels; wait() blocks on that copy
// only, so the host can plan the next step meanwhile.
class CudaPendingTokens : public PendingTokens {
 public:
  CudaPendingTokens(std::shared_ptr<Context> ctx, const Tensor& ids, int64_t n)
      : ctx_(std::move(ctx)), n_(n), buf_(ctx_->acquire_staging(size_t(n) * 4)) {
    cuda_check(
        cudaMemcpyAsync(buf_.host, ids.data(), size_t(n) * 4, cudaMemcpyDeviceToHost, ctx_->stream),
        "sampled ids to the host");
    cuda_check(cudaEventRecord(buf_.copied, ctx_->stream), "cudaEventRecord");
  }
  // Unread: the pool's next user of the buffer waits for the copy first.
  ~CudaPendingTokens() override {
    if (buf_.host) ctx_->return_staging(buf_);
  }
  std::vector<int32_t> wait() override {
    NC_CHECK(buf_.host, "sampled ids: wait() called twice");
    cuda_check(cudaEventSynchronize(buf_.copied),
               "waiting for sampled ids (an earlier kernel failed)");
    const auto* ids = static_cast<const int32_t*>(buf_.host);
    std::vector<int32_t> out(ids, ids + n_);
    ctx_->return_staging(buf_);
    buf_ = Staging{};
    return out;
  }

 private:
  std::shared_ptr<Context> ctx_;
  int64_t n_;
  Staging buf_;
};

// ---- Attention plan ----

struct LevelPlan {
  int batch_size = 0;
  bool causal = true;
  bool decode = false;  // FlashInfer's CUDA-core decode kernel; else batch prefill
  bool sm90 = false;    // FlashInfer's Hopper batch prefill (non-causal levels); else FA2
  bool side = false;    // runs on the side stream (with its split-kv scratch)
  // Split-KV scratch of a graph plan's level (fixed for the graph); null: the context's.
  void* float_ws = nullptr;
  size_t float_bytes = 0;
  cuda::PlanInfo info;
  size_t qo_indptr = 0, kv_indptr = 0, kv_indices = 0, last_page_len = 0;  // offsets in staging
  size_t int_ws = 0, int_ws_bytes = 0;
};

class CudaAttentionPlan final : public AttentionPlan {
 public:
  CudaAttentionPlan(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}
  ~CudaAttentionPlan() override {
    if (staging_.capacity && !borrowed_) ctx_->return_staging(staging_);
    for (void* p : scratch_) cudaFreeAsync(p, ctx_->stream);
  }

  std::shared_ptr<Context> ctx_;
  AttentionShape shape;
  int num_tokens = 0;
  std::vector<LevelPlan> levels;
  size_t batch_indices = 0, positions = 0;
  Staging staging_;
  bool borrowed_ = false;  // staging_ belongs to a graph slot
  // Per-step scratch for cascade merges: a level's output and two LSE arrays; with overlap and
  // two or more shared levels, a second shared state (the side stream merges its levels first).
  bool overlap = false;
  void* level_out = nullptr;
  float* lse_main = nullptr;
  float* lse_level = nullptr;
  void* level_out2 = nullptr;
  float* lse_level2 = nullptr;
  std::vector<void*> scratch_;

  int32_t* dev_i32(size_t off) const {
    return reinterpret_cast<int32_t*>(static_cast<char*>(staging_.dev) + off);
  }
  int32_t* host_i32(size_t off) const {
    return reinterpret_cast<int32_t*>(static_cast<char*>(staging_.host) + off);
  }
};

// Lays out int32 arrays, each 16-byte aligned.
struct Layout {
  size_t size = 0;
  size_t add(size_t bytes) {
    const size_t off = size;
    size = align_up(size + bytes, 16);
    return off;
  }
};

int64_t row_stride(const Tensor& t) {
  return t.ndim() >= 2 ? t.strides()[0] : t.numel();
}

// ---- GEMM (cuBLASLt) ----

struct GemmKey {
  int64_t n, m, k;
  bool bias;
  bool f32_out;
  int align;
  auto operator<=>(const GemmKey&) const = default;
};

struct GemmPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

int pointer_alignment(std::initializer_list<const void*> ptrs) {
  int a = 256;
  for (const void* p : ptrs) {
    if (!p) continue;
    while (a > 1 && reinterpret_cast<uintptr_t>(p) % uintptr_t(a) != 0) a /= 2;
  }
  return a;
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device_index, const CudaBackendOptions& options) : options_(options) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    NC_CHECK(e == cudaSuccess && count > 0, "make_cuda_backend: no CUDA device ({})",
             e == cudaSuccess ? "none found" : cudaGetErrorString(e));
    NC_CHECK(device_index >= 0 && device_index < count,
             "make_cuda_backend: device {} outside [0, {})", device_index, count);
    ctx_ = std::make_shared<Context>();
    ctx_->device = device_index;
    cuda_check(cudaSetDevice(device_index), "cudaSetDevice");
    cuda_check(cudaStreamCreateWithFlags(&ctx_->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    cublas_check(cublasLtCreate(&ctx_->lt), "cublasLtCreate");
    cuda_check(cudaMalloc(&ctx_->lt_workspace, ctx_->lt_workspace_bytes), "cudaMalloc");
    // Keep freed blocks in the stream-ordered pool instead of returning them to the driver.
    cudaMemPool_t pool;
    cuda_check(cudaDeviceGetDefaultMemPool(&pool, device_index), "cudaDeviceGetDefaultMemPool");
    uint64_t threshold = UINT64_MAX;
    cuda_check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold),
               "cudaMemPoolSetAttribute");
    cudaDeviceProp prop{};
    cuda_check(cudaGetDeviceProperties(&prop, device_index), "cudaGetDeviceProperties");
    name_ = fmt::format("cuda:{} ({})", device_index, prop.name);
  }

  // The engine sizes its KV cache from the memory free once the weights and workspace are in
  // place. Blocks freed into the stream-ordered pool stay reserved by it (release threshold
  // above), so they are handed back to the driver before asking.
  int64_t free_memory_bytes() override {
    cuda_check(cudaSetDevice(ctx_->device), "cudaSetDevice");
    cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    cudaMemPool_t p;
    cuda_check(cudaDeviceGetDefaultMemPool(&p, ctx_->device), "cudaDeviceGetDefaultMemPool");
    cuda_check(cudaMemPoolTrimTo(p, 0), "cudaMemPoolTrimTo");
    size_t free_b = 0, total_b = 0;
    cuda_check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    return int64_t(free_b);
  }

  ~CudaBackend() override {
    for (auto& [key, g] : gemms_) {
      cublasLtMatrixLayoutDestroy(g.a);
      cublasLtMatrixLayoutDestroy(g.b);
      cublasLtMatrixLayoutDestroy(g.c);
      cublasLtMatmulDescDestroy(g.desc);
    }
  }

  std::string name() const override { return name_; }
  Device device() const override { return Device::CUDA; }
  DType dtype() const override { return DType::BF16; }

  // ---- Memory ----

  Tensor alloc(const Shape& shape, DType dtype) override {
    int64_t n = 1;
    for (int64_t d : shape) {
      NC_CHECK(d >= 0, "alloc: negative dimension in {}", shape_str(shape));
      n *= d;
    }
    const size_t bytes = std::max<size_t>(size_t(n) * dtype_size(dtype), 16);
    void* p = nullptr;
    cudaError_t e = cudaMallocAsync(&p, bytes, ctx_->stream);
    NC_CHECK(e == cudaSuccess, "alloc: cannot allocate {} bytes on the GPU for {}: {}", bytes,
             shape_str(shape), cudaGetErrorString(e));
    auto ctx = ctx_;
    std::shared_ptr<void> storage(p, [ctx](void* q) { cudaFreeAsync(q, ctx->stream); });
    return Tensor::adopt(std::move(storage), shape, dtype, Device::CUDA);
  }

  Tensor upload(const HostTensor& t) override {
    Tensor out = alloc(t.shape, DType::BF16);
    NC_CHECK(int64_t(t.data.size()) == out.numel(), "upload: {} values for shape {}", t.data.size(),
             shape_str(t.shape));
    std::vector<uint16_t> bf(t.data.size());
    for (size_t i = 0; i < bf.size(); ++i) bf[i] = f32_to_bf16(t.data[i]);
    // From pageable memory the call returns once `bf` has been staged, so it may go out of scope.
    cuda_check(
        cudaMemcpyAsync(out.data(), bf.data(), out.nbytes(), cudaMemcpyHostToDevice, ctx_->stream),
        "upload");
    return out;
  }

  void copy_from_host(Tensor dst, const void* src) override {
    dev(dst, "copy_from_host");
    dst.expect_contiguous("copy_from_host");
    if (dst.nbytes() == 0) return;
    cuda_check(cudaMemcpyAsync(dst.data(), src, dst.nbytes(), cudaMemcpyHostToDevice, ctx_->stream),
               "copy_from_host");
  }

  std::vector<float> to_host_f32(const Tensor& t) override {
    dev(t, "to_host_f32");
    t.expect_contiguous("to_host_f32");
    std::vector<float> out(size_t(t.numel()));
    if (out.empty()) return out;
    if (t.dtype() == DType::F32) {
      cuda_check(
          cudaMemcpyAsync(out.data(), t.data(), t.nbytes(), cudaMemcpyDeviceToHost, ctx_->stream),
          "to_host_f32");
    } else {
      NC_CHECK(t.dtype() == DType::BF16 || t.dtype() == DType::F16,
               "to_host_f32: dtype {} is not a float type", dtype_name(t.dtype()));
      Tensor tmp = alloc(t.shape(), DType::F32);
      k_call([&] {
        if (t.dtype() == DType::BF16)
          cuda::bf16_to_f32(t.data(), tmp.ptr<float>(), t.numel(), s());
        else
          cuda::f16_to_f32(t.data(), tmp.ptr<float>(), t.numel(), s());
      });
      cuda_check(cudaMemcpyAsync(out.data(), tmp.data(), tmp.nbytes(), cudaMemcpyDeviceToHost,
                                 ctx_->stream),
                 "to_host_f32");
    }
    synchronize();
    return out;
  }

  void synchronize() override {
    cuda_check(cudaStreamSynchronize(ctx_->stream), "synchronize (an earlier kernel failed)");
  }

  // ---- Ops ----

  void embedding(const Tensor& table, const Tensor& ids, Tensor out) override {
    const int64_t V = table.dim(0), H = table.dim(1), T = ids.numel();
    bf16(table, "embedding table");
    i32(ids, "embedding ids");
    out.expect_shape({T, H}, "embedding output");
    bf16(out, "embedding output");
    k_call(
        [&] { cuda::embedding_bf16(table.data(), ids.ptr<int32_t>(), out.data(), T, H, V, s()); });
  }

  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) override {
    const int64_t H = x.dim(-1), N = x.numel() / std::max<int64_t>(H, 1);
    weight.expect_shape({H}, "rmsnorm weight");
    out.expect_shape(x.shape(), "rmsnorm output");
    bf16(x, "rmsnorm input");
    bf16(weight, "rmsnorm weight");
    bf16(out, "rmsnorm output");
    k_call(
        [&] { cuda::rmsnorm_bf16(x.data(), weight.data(), out.data(), int(N), int(H), eps, s()); });
  }

  void add_rmsnorm(Tensor x, Tensor residual, const Tensor& weight, float eps) override {
    const int64_t H = x.dim(-1), N = x.numel() / std::max<int64_t>(H, 1);
    residual.expect_shape(x.shape(), "add_rmsnorm residual");
    weight.expect_shape({H}, "add_rmsnorm weight");
    bf16(x, "add_rmsnorm input");
    bf16(residual, "add_rmsnorm residual");
    bf16(weight, "add_rmsnorm weight");
    k_call([&] {
      cuda::add_rmsnorm_bf16(x.data(), residual.data(), weight.data(), int(N), int(H), eps, s());
    });
  }

  // out may be bf16 or float32 (e.g. logits, so that near-ties are not rounded away); a bias
  // has out's dtype.
  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor out) override {
    const int64_t N = x.dim(0), K = x.dim(1), M = w.dim(0);
    NC_CHECK(w.dim(1) == K, "linear: input has {} features, weight {} expects {}", K,
             shape_str(w.shape()), w.dim(1));
    NC_CHECK(K > 0, "linear: no input features");
    out.expect_shape({N, M}, "linear output");
    bf16(x, "linear input");
    bf16(w, "linear weight");
    dev(out, "linear output");
    NC_CHECK(out.dtype() == DType::BF16 || out.dtype() == DType::F32,
             "linear: output dtype {} not supported (bf16, f32)", dtype_name(out.dtype()));
    for (const Tensor* t : {&x, &w, static_cast<const Tensor*>(&out)})
      t->expect_contiguous("linear");
    if (bias.defined()) {
      bias.expect_shape({M}, "linear bias");
      dev(bias, "linear bias");
      bias.expect_dtype(out.dtype(), "linear bias");
    }
    if (N == 0 || M == 0) return;
    gemm(x, w, bias, out, N, M, K);
  }

  void rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& cos_sin,
            int head_dim) override {
    const int64_t T = positions.numel();
    i32(positions, "rope positions");
    NC_CHECK(head_dim > 0 && head_dim % 2 == 0, "rope: bad head_dim {}", head_dim);
    NC_CHECK(cos_sin.ndim() == 2 && cos_sin.dim(1) == head_dim,
             "rope: cos/sin table {} does not have {} columns", shape_str(cos_sin.shape()),
             head_dim);
    dev(cos_sin, "rope table");
    cos_sin.expect_contiguous("rope table");
    NC_CHECK(cuda::head_dim_supported(head_dim), "rope: head_dim {} not supported (64, 128)",
             head_dim);
    for (const Tensor* t : {static_cast<const Tensor*>(&q), static_cast<const Tensor*>(&k)}) {
      bf16(*t, "rope input");
      NC_CHECK(t->dim(0) == T && t->dim(-1) % head_dim == 0,
               "rope: input {} does not hold {} rows of heads of {}", shape_str(t->shape()), T,
               head_dim);
    }
    const float* table = rope_table(cos_sin);
    k_call([&] {
      cuda::rope_bf16(q.data(), k.data(), table, positions.ptr<int32_t>(), int(T),
                      int(q.dim(-1) / head_dim), int(k.dim(-1) / head_dim), head_dim, s());
    });
  }

  void qkv_split_norm_rope(const Tensor& qkv, const Tensor& q_norm, const Tensor& k_norm, float eps,
                           const Tensor& positions, const Tensor& cos_sin, int head_dim, Tensor q,
                           Tensor k, Tensor v) override {
    const char* what = "qkv_split_norm_rope";
    const int64_t T = positions.numel(), D = head_dim;
    i32(positions, "qkv_split_norm_rope positions");
    NC_CHECK(cuda::head_dim_supported(head_dim), "{}: head_dim {} not supported (64, 128)", what,
             head_dim);
    NC_CHECK(cos_sin.ndim() == 2 && cos_sin.dim(1) == D,
             "{}: cos/sin table {} does not have {} columns", what, shape_str(cos_sin.shape()), D);
    dev(cos_sin, "qkv_split_norm_rope table");
    cos_sin.expect_contiguous("qkv_split_norm_rope table");
    const int64_t QW = q.dim(-1), KW = k.dim(-1);
    NC_CHECK(QW % D == 0 && KW % D == 0, "{}: q {} / k {} are not heads of {}", what,
             shape_str(q.shape()), shape_str(k.shape()), D);
    q.expect_shape({T, QW}, "qkv_split_norm_rope q");
    k.expect_shape({T, KW}, "qkv_split_norm_rope k");
    v.expect_shape({T, KW}, "qkv_split_norm_rope v");
    qkv.expect_shape({T, QW + 2 * KW}, "qkv_split_norm_rope qkv");
    std::vector<const void*> ptrs;
    for (const Tensor* t : {&qkv, &q_norm, &k_norm, static_cast<const Tensor*>(&q),
                            static_cast<const Tensor*>(&k), static_cast<const Tensor*>(&v)}) {
      if (!t->defined()) continue;  // a norm weight may be absent
      bf16(*t, what);
      t->expect_contiguous(what);
      ptrs.push_back(t->data());
    }
    for (const Tensor* w : {&q_norm, &k_norm})
      if (w->defined()) w->expect_shape({D}, "qkv_split_norm_rope norm weight");
    for (const void* p : ptrs)
      NC_CHECK(reinterpret_cast<uintptr_t>(p) % 4 == 0, "{}: tensor not 4-byte aligned", what);
    const float* table = rope_table(cos_sin);
    k_call([&] {
      cuda::qkv_split_norm_rope_bf16(qkv.data(), q_norm.defined() ? q_norm.data() : nullptr,
                                     k_norm.defined() ? k_norm.data() : nullptr, eps,
                                     positions.ptr<int32_t>(), table, int(T), int(QW / D),
                                     int(KW / D), head_dim, q.data(), k.data(), v.data(), s());
    });
  }

  void silu_and_mul(const Tensor& gate_up, Tensor out) override {
    const int64_t T = gate_up.dim(0), I = gate_up.dim(1) / 2;
    NC_CHECK(gate_up.dim(1) % 2 == 0, "silu_and_mul: odd width {}", gate_up.dim(1));
    out.expect_shape({T, I}, "silu_and_mul output");
    bf16(gate_up, "silu_and_mul input");
    bf16(out, "silu_and_mul output");
    k_call([&] { cuda::silu_and_mul_bf16(gate_up.data(), out.data(), int(T), int(I), s()); });
  }

  void copy_rows(const Tensor& src, Tensor dst) override {
    dst.expect_shape(src.shape(), "copy_rows");
    NC_CHECK(src.dtype() == dst.dtype(), "copy_rows: dtypes {} and {} differ",
             dtype_name(src.dtype()), dtype_name(dst.dtype()));
    dev(src, "copy_rows");
    dev(dst, "copy_rows");
    src.expect_contiguous("copy_rows");
    dst.expect_contiguous("copy_rows");
    if (src.nbytes() == 0) return;
    cuda_check(cudaMemcpyAsync(dst.data(), src.data(), src.nbytes(), cudaMemcpyDeviceToDevice,
                               ctx_->stream),
               "copy_rows");
  }

  void add(Tensor x, const Tensor& y) override {
    y.expect_shape(x.shape(), "add");
    NC_CHECK(x.dtype() == y.dtype(), "add: dtypes {} and {} differ", dtype_name(x.dtype()),
             dtype_name(y.dtype()));
    dev(x, "add");
    dev(y, "add");
    x.expect_contiguous("add");
    y.expect_contiguous("add");
    k_call([&] {
      if (x.dtype() == DType::BF16)
        cuda::add_bf16(x.data(), y.data(), x.numel(), s());
      else if (x.dtype() == DType::F32)
        cuda::add_f32(x.ptr<float>(), y.ptr<float>(), x.numel(), s());
      else
        fail("add: dtype {} not supported", dtype_name(x.dtype()));
    });
  }

  void gather_rows(const Tensor& x, const Tensor& rows, Tensor out) override {
    const int64_t R = rows.numel();
    NC_CHECK(x.ndim() == 2, "gather_rows: input {} is not 2-D", shape_str(x.shape()));
    out.expect_shape({R, x.dim(1)}, "gather_rows");
    NC_CHECK(x.dtype() == out.dtype(), "gather_rows: dtypes differ");
    dev(x, "gather_rows");
    dev(out, "gather_rows");
    x.expect_contiguous("gather_rows");
    out.expect_contiguous("gather_rows");
    i32(rows, "gather_rows rows");
    const int64_t row_bytes = x.dim(1) * int64_t(dtype_size(x.dtype()));
    k_call([&] {
      cuda::gather_rows(x.data(), rows.ptr<int32_t>(), out.data(), R, x.dim(0), row_bytes, s());
    });
  }

  void scatter_ids(const Tensor& src, const Tensor& pairs, Tensor dst) override {
    for (const Tensor* t : {&src, &pairs, static_cast<const Tensor*>(&dst)}) {
      dev(*t, "scatter_ids");
      i32(*t, "scatter_ids");
    }
    NC_CHECK(pairs.numel() % 2 == 0, "scatter_ids: {} pair entries", pairs.numel());
    k_call([&] {
      cuda::scatter_ids(src.ptr<int32_t>(), src.numel(), pairs.ptr<int32_t>(), pairs.numel() / 2,
                        dst.ptr<int32_t>(), dst.numel(), s());
    });
  }

  // ---- Attention ----

  std::unique_ptr<AttentionPlan> plan_attention(const AttentionStep& step,
                                                const AttentionShape& shape) override {
    validate_shape(shape);
    NC_CHECK(!step.levels.empty(), "attention plan: no levels");
    NC_CHECK(step.num_tokens >= 0, "attention plan: negative token count");
    const int page_size = shape.kv.page_size;
    for (const PagedKVBatch& level : step.levels)
      level.validate(step.num_tokens, page_size, shape.kv.num_pages);
    const PagedKVBatch& last = step.levels.back();
    for (int b = 0; b < last.batch_size(); ++b) {
      NC_CHECK(last.kv_len(b, page_size) >= last.q_len(b),
               "attention plan: last-level entry {} has {} new tokens but only {} slots", b,
               last.q_len(b), last.kv_len(b, page_size));
    }

    auto plan = std::make_unique<CudaAttentionPlan>(ctx_);
    plan->shape = shape;
    plan->num_tokens = step.num_tokens;
    const int T = step.num_tokens;
    const int group = shape.num_qo_heads / shape.num_kv_heads;

    // Layout of the staging buffer: our CSR arrays, the append indices, FlashInfer's regions.
    Layout lay;
    plan->levels.resize(step.levels.size());
    for (size_t l = 0; l < step.levels.size(); ++l) {
      const PagedKVBatch& in = step.levels[l];
      LevelPlan& lp = plan->levels[l];
      lp.batch_size = in.batch_size();
      lp.causal = in.causal;
      lp.qo_indptr = lay.add(in.qo_indptr.size() * 4);
      lp.kv_indptr = lay.add(in.kv_indptr.size() * 4);
      lp.kv_indices = lay.add(in.kv_indices.size() * 4);
      lp.last_page_len = lay.add(in.kv_last_page_len.size() * 4);
    }
    plan->batch_indices = lay.add(size_t(T) * 4);
    plan->positions = lay.add(size_t(T) * 4);
    const size_t metadata_bytes = lay.size;

    int num_shared = 0;  // shared levels with entries
    for (size_t l = 0; l + 1 < step.levels.size(); ++l)
      num_shared += step.levels[l].batch_size() > 0;
    plan->overlap = options_.overlap_cascade_levels && num_shared > 0 && T > 0;
    if (plan->overlap) ctx_->ensure_side_stream();
    size_t float_need = 0, side_float_need = 0;
    std::vector<cuda::PlanQuery> queries(step.levels.size());
    for (size_t l = 0; l < step.levels.size(); ++l) {
      const PagedKVBatch& in = step.levels[l];
      LevelPlan& lp = plan->levels[l];
      if (lp.batch_size == 0 || T == 0) continue;
      cuda::PlanQuery& q = queries[l];
      q = {in.qo_indptr.data(), in.kv_indptr.data(), T,        lp.batch_size, shape.num_qo_heads,
           shape.num_kv_heads,  shape.head_dim,      page_size};
      q.kv_last_page_len_h = in.kv_last_page_len.data();
      lp.decode = use_decode_kernel(in, group, shape);
      lp.sm90 = !lp.decode && !in.causal && use_sm90_kernel(shape, in);
      size_t fb = 0, ib = 0;
      k_call([&] {
        if (lp.decode)
          cuda::decode_workspace_size(q, &fb, &ib);
        else if (lp.sm90)
          cuda::sm90_prefill_workspace_size(q, &fb, &ib);
        else
          cuda::prefill_workspace_size(q, &fb, &ib);
      });
      lp.int_ws_bytes = align_up(ib, 16) + 16;
      lp.int_ws = lay.add(lp.int_ws_bytes);
      lp.side = plan->overlap && l + 1 < step.levels.size();
      size_t& need = lp.side ? side_float_need : float_need;
      need = std::max(need, fb);
    }
    ctx_->ensure_float_ws(&ctx_->attn_float_ws, &ctx_->attn_float_bytes, float_need);
    if (plan->overlap)
      ctx_->ensure_float_ws(&ctx_->side_float_ws, &ctx_->side_float_bytes, side_float_need);

    plan->staging_ = ctx_->acquire_staging(lay.size);
    fill_metadata(*plan, step);
    cudaStream_t st = ctx_->stream;
    for (size_t l = 0; l < step.levels.size(); ++l) {
      LevelPlan& lp = plan->levels[l];
      if (lp.batch_size == 0 || T == 0) continue;
      const cuda::PlanWorkspace ws = workspace(*plan, lp);
      k_call([&] {
        lp.info = lp.decode ? cuda::decode_plan(queries[l], ws, st)
                  : lp.sm90 ? cuda::sm90_prefill_plan(queries[l], ws, st)
                            : cuda::prefill_plan(queries[l], ws, st);
      });
    }
    cuda_check(cudaMemcpyAsync(plan->staging_.dev, plan->staging_.host, metadata_bytes,
                               cudaMemcpyHostToDevice, st),
               "attention plan metadata copy");
    cuda_check(cudaEventRecord(plan->staging_.copied, st), "cudaEventRecord");

    if (step.levels.size() > 1 && T > 0) {
      const size_t rows = size_t(T) * shape.num_qo_heads;
      plan->level_out = scratch(*plan, rows * shape.head_dim * 2);
      plan->lse_main = static_cast<float*>(scratch(*plan, rows * 4));
      plan->lse_level = static_cast<float*>(scratch(*plan, rows * 4));
      if (plan->overlap && num_shared > 1) {
        plan->level_out2 = scratch(*plan, rows * shape.head_dim * 2);
        plan->lse_level2 = static_cast<float*>(scratch(*plan, rows * 4));
      }
    }
    return plan;
  }

  void attention(const AttentionPlan& plan_base, const Tensor& q, const Tensor& k, const Tensor& v,
                 Tensor kv_pages, Tensor out) override {
    const auto* plan = dynamic_cast<const CudaAttentionPlan*>(&plan_base);
    NC_CHECK(plan != nullptr && plan->ctx_ == ctx_, "attention: plan was not made by this backend");
    const AttentionShape& sh = plan->shape;
    const int64_t T = plan->num_tokens, Hq = sh.num_qo_heads, Hk = sh.num_kv_heads, D = sh.head_dim;
    q.expect_shape({T, Hq * D}, "attention q");
    k.expect_shape({T, Hk * D}, "attention k");
    v.expect_shape({T, Hk * D}, "attention v");
    out.expect_shape({T, Hq * D}, "attention output");
    for (const Tensor* t :
         {&q, static_cast<const Tensor*>(&out), static_cast<const Tensor*>(&kv_pages)}) {
      bf16(*t, "attention");
      t->expect_contiguous("attention");
    }
    for (const Tensor* t : {&k, &v}) {
      bf16(*t, "attention");
      NC_CHECK(t->strides().back() == 1, "attention: k/v rows must be contiguous");
    }
    NC_CHECK(kv_pages.numel() == int64_t(sh.kv.num_pages) * sh.kv.elems_per_page(),
             "attention: kv pages {} do not hold {} pages of {} elements",
             shape_str(kv_pages.shape()), sh.kv.num_pages, sh.kv.elems_per_page());
    if (T == 0) return;

    cudaStream_t st = ctx_->stream;
    const size_t nl = plan->levels.size();
    const LevelPlan& last = plan->levels.back();
    if (plan->overlap) {
      run_shared_levels_on_side(*plan, kv_pages, q);
      k_call([&] {
        cuda::append_paged_kv(paged(*plan, last, kv_pages), k.data(), v.data(),
                              plan->dev_i32(plan->batch_indices), plan->dev_i32(plan->positions),
                              int(T), row_stride(k), row_stride(v), st);
      });
      run_level(*plan, last, kv_pages, q, out.data(), plan->lse_main, st);
      cuda_check(cudaStreamWaitEvent(st, ctx_->join), "cudaStreamWaitEvent");
      k_call([&] {
        cuda::merge_state_inplace(out.data(), plan->lse_main, plan->level_out, plan->lse_level,
                                  int(T), int(Hq), int(D), st);
      });
      return;
    }
    k_call([&] {
      cuda::append_paged_kv(paged(*plan, last, kv_pages), k.data(), v.data(),
                            plan->dev_i32(plan->batch_indices), plan->dev_i32(plan->positions),
                            int(T), row_stride(k), row_stride(v), st);
    });
    // The last level writes `out` directly; shared levels are merged into it.
    run_level(*plan, last, kv_pages, q, out.data(), nl > 1 ? plan->lse_main : nullptr, st);
    for (size_t l = 0; l + 1 < nl; ++l) {
      const LevelPlan& lp = plan->levels[l];
      if (lp.batch_size == 0) continue;
      run_level(*plan, lp, kv_pages, q, plan->level_out, plan->lse_level, st);
      k_call([&] {
        cuda::merge_state_inplace(out.data(), plan->lse_main, plan->level_out, plan->lse_level,
                                  int(T), int(Hq), int(D), st);
      });
    }
  }

  // ---- Random weights, sampling ----

  void fill_uniform(Tensor t, uint64_t seed, float low, float high) override {
    dev(t, "fill_uniform");
    t.expect_contiguous("fill_uniform");
    NC_CHECK(t.dtype() == DType::BF16 || t.dtype() == DType::F32,
             "fill_uniform: dtype {} not supported (bf16, f32)", dtype_name(t.dtype()));
    k_call([&] {
      cuda::fill_uniform(t.data(), t.dtype() == DType::BF16, t.numel(), seed, low, high, s());
    });
  }

  std::vector<int32_t> sample_tokens(const Tensor& logits,
                                     const std::vector<RowSampling>& rows) override {
    const int64_t R = logits.ndim() == 2 ? logits.dim(0) : -1;
    NC_CHECK(R >= 0 && int64_t(rows.size()) == R,
             "sample_tokens: logits {} with {} rows of sampling parameters",
             shape_str(logits.shape()), rows.size());
    if (R == 0) return {};
    return sample_tokens_async(logits, rows, alloc({R}, DType::I32))->wait();
  }

  int64_t reserve_sampling(int max_rows, int vocab) override {
    NC_CHECK(max_rows >= 1 && vocab >= 1, "reserve_sampling: {} rows of {} ids", max_rows, vocab);
    size_t bytes = 0;
    k_call([&] {
      bytes = cuda::filter_workspace_bytes(std::min(max_rows, cuda::kFilterMaxRows), vocab);
    });
    if (!filter_ws_.defined() || filter_ws_.nbytes() < bytes)
      filter_ws_ = alloc({int64_t((bytes + 3) / 4)}, DType::I32);
    return int64_t(filter_ws_.nbytes());
  }

  std::unique_ptr<PendingTokens> sample_tokens_async(const Tensor& logits,
                                                     const std::vector<RowSampling>& rows,
                                                     Tensor ids) override {
    const int64_t R = logits.ndim() == 2 ? logits.dim(0) : -1;
    NC_CHECK(R >= 0 && int64_t(rows.size()) == R,
             "sample_tokens: logits {} with {} rows of sampling parameters",
             shape_str(logits.shape()), rows.size());
    dev(logits, "sample_tokens");
    logits.expect_dtype(DType::F32, "sample_tokens");
    logits.expect_contiguous("sample_tokens");
    dev(ids, "sample_tokens ids");
    i32(ids, "sample_tokens ids");
    NC_CHECK(ids.numel() == R, "sample_tokens: ids tensor {} for {} rows", shape_str(ids.shape()),
             R);
    for (const RowSampling& p : rows) p.validate();
    if (R == 0) return ready_tokens({});
    const int V = int(logits.dim(1));
    const bool filtered =
        std::any_of(rows.begin(), rows.end(), [](const RowSampling& p) { return p.filtered(); });
    NC_CHECK(!filtered || reinterpret_cast<uintptr_t>(logits.data()) % 16 == 0,
             "sample_tokens: top-k/top-p/min-p need 16-byte aligned logits");
    // One upload of 4-byte words: seeds (8-byte aligned first), then per row the inverse
    // temperature, the temperature, top-k, top-p and min-p as FlashInfer and sample_rows take
    // them (unfiltered rows: top-k = vocab, top-p = 1, min-p = -1, i.e. no filter).
    const size_t n = size_t(R);
    std::vector<uint32_t> host(n * 7);
    auto put_f32 = [&](size_t col, size_t r, float v) { std::memcpy(&host[col * n + r], &v, 4); };
    for (size_t r = 0; r < n; ++r) {
      const RowSampling& p = rows[r];
      const bool f = p.filtered();
      std::memcpy(&host[2 * r], &p.seed, 8);
      put_f32(2, r, p.inv_temperature);
      // Greedy rows ignore their probabilities; temperature 1 keeps -inf logits out of NaN.
      put_f32(3, r, p.inv_temperature == 0 ? 1.0f : 1.0f / p.inv_temperature);
      host[4 * n + r] = uint32_t(f && p.top_k > 0 && p.top_k < V ? p.top_k : V);
      put_f32(5, r, f ? p.top_p : 1.0f);
      put_f32(6, r, f ? p.min_p : -1.0f);
    }
    // From pageable memory: the copy is staged before the call returns.
    Tensor params = alloc({int64_t(n * 7)}, DType::I32);
    copy_from_host(params, host.data());
    auto* words = static_cast<uint32_t*>(params.data());
    const auto* seeds = reinterpret_cast<const uint64_t*>(words);
    const auto* inv_t = reinterpret_cast<const float*>(words + 2 * n);
    const auto* temp = reinterpret_cast<const float*>(words + 3 * n);
    const auto* top_k = reinterpret_cast<const int32_t*>(words + 4 * n);
    const auto* top_p = reinterpret_cast<const float*>(words + 5 * n);
    const auto* min_p = reinterpret_cast<const float*>(words + 6 * n);
    const float* x = logits.ptr<float>();
    if (!filtered) {
      const Tensor best = alloc({2 * R}, DType::I32);  // the per-row running best (8 bytes each)
      k_call([&] {
        cuda::sample_rows(x, int(R), V, inv_t, seeds, nullptr, nullptr, ids.ptr<int32_t>(),
                          best.data(), s());
      });
    } else {
      sample_filtered(rows, x, V, seeds, inv_t, temp, top_k, top_p, min_p, ids.ptr<int32_t>());
    }
    return std::make_unique<CudaPendingTokens>(ctx_, ids, R);
  }

  // The rows in chunks of up to kFilterMaxRows (the workspace grows with rows * vocab): FlashInfer
  // filters each chunk's probabilities (top-k / top-p only where a row of the chunk asks), then
  // sample_rows draws among what is left.
  void sample_filtered(const std::vector<RowSampling>& rows, const float* x, int V,
                       const uint64_t* seeds, const float* inv_t, const float* temp,
                       const int32_t* top_k, const float* top_p, const float* min_p, int32_t* ids) {
    const int R = int(rows.size());
    const int chunk = std::min(R, cuda::kFilterMaxRows);
    size_t ws_bytes = 0;
    k_call([&] { ws_bytes = cuda::filter_workspace_bytes(chunk, V); });
    // The reserved scratch when it is large enough (one stream: no two draws use it at once).
    Tensor ws = filter_ws_.defined() && filter_ws_.nbytes() >= ws_bytes
                    ? filter_ws_
                    : alloc({int64_t((ws_bytes + 3) / 4)}, DType::I32);
    for (int r0 = 0; r0 < R; r0 += chunk) {
      const int m = std::min(chunk, R - r0);
      bool any_k = false, any_p = false;
      for (int r = r0; r < r0 + m; ++r) {
        const RowSampling& p = rows[size_t(r)];
        any_k |= p.filtered() && p.top_k > 0 && p.top_k < V;
        any_p |= p.filtered() && p.top_p < 1;
      }
      const float* xr = x + int64_t(r0) * V;
      k_call([&] {
        const float* probs = cuda::filter_probs(xr, m, V, temp + r0, any_k ? top_k + r0 : nullptr,
                                                any_p ? top_p + r0 : nullptr, ws.data(), s());
        cuda::sample_rows(xr, m, V, inv_t + r0, seeds + r0, probs, min_p + r0, ids + r0, nullptr,
                          s());
      });
    }
  }

  // ---- CUDA graphs ----

  bool supports_graphs() const override { return true; }

  // Decode-only steps: the own (last) level on FlashInfer's decode kernel, shared levels (cascade)
  // on the FA2 prefill kernel without mask, each planned in FlashInfer's CUDA-graph mode. A
  // shared level is padded to `batch` entries with empty entries of no rows, so every plan of a
  // slot has the same batch size and row count, hence the same grid and workspace layout; empty
  // entries (rows without a prefix at that level) give an empty state that merges exactly.
  std::unique_ptr<AttentionPlan> plan_attention_graph(const AttentionStep& step,
                                                      const AttentionShape& shape, int slot_id,
                                                      int max_pages) override {
    validate_shape(shape);
    const size_t nl = step.levels.size();
    if (nl == 0 || max_pages < 1) return nullptr;
    const PagedKVBatch& own = step.levels.back();
    const int B = own.batch_size(), page_size = shape.kv.page_size;
    if (B == 0 || step.num_tokens != B) return nullptr;
    // Shared levels are non-causal; anything else is not a cascade decode step.
    for (size_t l = 0; l + 1 < nl; ++l)
      if (step.levels[l].causal) return nullptr;
    for (const PagedKVBatch& level : step.levels)
      level.validate(step.num_tokens, page_size, shape.kv.num_pages);
    if (!cuda::decode_supported(shape.num_qo_heads, shape.num_kv_heads, shape.head_dim))
      return nullptr;
    for (int b = 0; b < B; ++b) {
      if (own.q_len(b) != 1 || own.num_pages(b) < 1 || own.num_pages(b) > max_pages) return nullptr;
    }
    std::vector<PagedKVBatch> shared(nl - 1);
    for (size_t l = 0; l + 1 < nl; ++l) {
      const PagedKVBatch& in = step.levels[l];
      // The sm90 kernel (entries of >= 128 rows) has no graph mode here: such steps run eagerly.
      if (in.causal || in.batch_size() > B ||
          int64_t(in.kv_indices.size()) > int64_t(B) * max_pages || use_sm90_kernel(shape, in))
        return nullptr;
      shared[l] = in;
      while (shared[l].batch_size() < B) shared[l].add_pages(0, {}, 0, page_size);
    }
    auto level_in = [&](size_t l) -> const PagedKVBatch& { return l + 1 < nl ? shared[l] : own; };
    std::vector<cuda::PlanQuery> queries(nl);
    for (size_t l = 0; l < nl; ++l) {
      const PagedKVBatch& in = level_in(l);
      queries[l] = cuda::PlanQuery{
          in.qo_indptr.data(), in.kv_indptr.data(), B,         B, shape.num_qo_heads,
          shape.num_kv_heads,  shape.head_dim,      page_size,
          /*cuda_graph=*/true};
    }
    GraphSlot& slot = graph_slot(slot_id, queries, max_pages);
    // The host side of the slot is rewritten only once its last copy has run.
    cuda_check(cudaEventSynchronize(slot.staging.copied), "waiting for a plan's metadata copy");
    char* host = static_cast<char*>(slot.staging.host);
    auto put = [&](size_t off, const std::vector<int32_t>& v) {
      if (!v.empty()) std::memcpy(host + off, v.data(), v.size() * 4);
    };
    for (size_t l = 0; l < nl; ++l) {
      const PagedKVBatch& in = level_in(l);
      const GraphLevel& gl = slot.levels[l];
      put(gl.qo_indptr, in.qo_indptr);
      put(gl.kv_indptr, in.kv_indptr);
      put(gl.last_page_len, in.kv_last_page_len);
      put(gl.kv_indices, in.kv_indices);
    }
    auto* bi = reinterpret_cast<int32_t*>(host + slot.batch_indices);
    auto* pos = reinterpret_cast<int32_t*>(host + slot.positions);
    for (int b = 0; b < B; ++b) bi[b] = b, pos[b] = own.kv_len(b, page_size) - 1;

    auto plan = std::make_unique<CudaAttentionPlan>(ctx_);
    plan->shape = shape;
    plan->num_tokens = B;
    plan->staging_ = slot.staging;
    plan->borrowed_ = true;
    plan->batch_indices = slot.batch_indices;
    plan->positions = slot.positions;
    void* shared_ws = nullptr;
    if (nl > 1) {
      // The shared levels run one after the other (on the side stream when overlapped, with
      // fork and join events that stream capture records as graph dependencies).
      plan->overlap = options_.overlap_cascade_levels;
      if (plan->overlap) ctx_->ensure_side_stream();
      const size_t rows = size_t(B) * shape.num_qo_heads;
      const size_t out_bytes = align_up(rows * shape.head_dim * 2, 256),
                   lse_bytes = align_up(rows * 4, 256);
      const size_t ws_bytes = align_up(slot.shared_float_bytes, 256);
      char* base = static_cast<char*>(graph_scratch(ws_bytes + 2 * out_bytes + 3 * lse_bytes));
      shared_ws = base;
      base += ws_bytes;
      plan->level_out = base;
      plan->level_out2 = base + out_bytes;
      base += 2 * out_bytes;
      plan->lse_main = reinterpret_cast<float*>(base);
      plan->lse_level = reinterpret_cast<float*>(base + lse_bytes);
      plan->lse_level2 = reinterpret_cast<float*>(base + 2 * lse_bytes);
    }
    cudaStream_t st = s();
    bool same_launch = true;
    for (size_t l = 0; l < nl; ++l) {
      GraphLevel& gl = slot.levels[l];
      const bool is_own = l + 1 == nl;
      LevelPlan lp;
      lp.batch_size = B;
      lp.causal = level_in(l).causal;
      lp.decode = is_own;
      lp.side = plan->overlap && !is_own;
      lp.qo_indptr = gl.qo_indptr;
      lp.kv_indptr = gl.kv_indptr;
      lp.kv_indices = gl.kv_indices;
      lp.last_page_len = gl.last_page_len;
      lp.int_ws = gl.int_ws;
      lp.int_ws_bytes = gl.int_ws_bytes;
      lp.float_ws = is_own ? slot.float_ws : shared_ws;
      lp.float_bytes = is_own ? slot.float_bytes : slot.shared_float_bytes;
      const cuda::PlanWorkspace ws = workspace(*plan, lp);
      k_call([&] {
        lp.info =
            is_own ? cuda::decode_plan(queries[l], ws, st) : cuda::prefill_plan(queries[l], ws, st);
      });
      if (gl.info.empty()) gl.info = lp.info;
      same_launch = same_launch && lp.info == gl.info;
      plan->levels.push_back(std::move(lp));
    }
    cuda_check(cudaMemcpyAsync(slot.staging.dev, slot.staging.host, slot.head_bytes,
                               cudaMemcpyHostToDevice, st),
               "graph plan metadata copy");
    for (size_t l = 0; l < nl; ++l) {
      const size_t n = level_in(l).kv_indices.size() * 4, off = slot.levels[l].kv_indices;
      if (n == 0) continue;
      cuda_check(cudaMemcpyAsync(static_cast<char*>(slot.staging.dev) + off, host + off, n,
                                 cudaMemcpyHostToDevice, st),
                 "graph plan page table copy");
    }
    cuda_check(cudaEventRecord(slot.staging.copied, st), "cudaEventRecord");
    // A graph replays the launch shape it was captured with; a plan that differs (it should
    // not: the batch size fixes it) runs eagerly instead.
    if (!same_launch) return nullptr;
    return plan;
  }

  void begin_capture() override {
    NC_CHECK(!ctx_->capturing, "begin_capture: already capturing");
    cuda_check(cudaStreamBeginCapture(s(), cudaStreamCaptureModeThreadLocal),
               "cudaStreamBeginCapture");
    ctx_->capturing = true;
  }

  void end_capture(int key) override {
    NC_CHECK(ctx_->capturing, "end_capture: not capturing");
    ctx_->capturing = false;
    cudaGraph_t graph = nullptr;
    const cudaError_t e = cudaStreamEndCapture(s(), &graph);
    if (key < 0 || e != cudaSuccess) {
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();  // a failed capture leaves a sticky-free error: clear it
      cuda_check(e, "cudaStreamEndCapture");
      return;
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t ie = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    cuda_check(ie, "cudaGraphInstantiate");
    drop_graph(key);
    ctx_->graphs[key] = exec;
  }

  bool has_graph(int key) const override { return ctx_->graphs.count(key) > 0; }

  void replay(int key) override {
    auto it = ctx_->graphs.find(key);
    NC_CHECK(it != ctx_->graphs.end(), "replay: no graph {}", key);
    cuda_check(cudaGraphLaunch(it->second, s()), "cudaGraphLaunch");
  }

  void clear_graphs() override {
    for (auto& [key, g] : ctx_->graphs) cudaGraphExecDestroy(g);
    ctx_->graphs.clear();
    if (!ctx_->retired_scratch.empty()) {
      synchronize();  // no replay still reads a retired buffer
      ctx_->free_retired_scratch();
    }
  }

  // ---- Timing ----

  void mark_pass_begin() override {
    if (ctx_->capturing) return;
    if (!ctx_->pass_begin) ctx_->pass_begin = ctx_->event();
    cuda_check(cudaEventRecord(ctx_->pass_begin, s()), "cudaEventRecord");
  }

  void mark_pass_end() override {
    if (ctx_->capturing || !ctx_->pass_begin) return;
    cudaEvent_t end = ctx_->event();
    cuda_check(cudaEventRecord(end, s()), "cudaEventRecord");
    ctx_->pending_passes.emplace_back(ctx_->pass_begin, end);
    ctx_->pass_begin = nullptr;
    if (ctx_->pending_passes.size() > 4096) ctx_->collect_passes(true);
  }

  double device_busy_seconds() override {
    ctx_->collect_passes();
    return ctx_->busy_s;
  }

  const CudaBackendOptions& options() const { return options_; }

 private:
  void drop_graph(int key) {
    auto it = ctx_->graphs.find(key);
    if (it == ctx_->graphs.end()) return;
    cudaGraphExecDestroy(it->second);
    ctx_->graphs.erase(it);
  }

  // The slot for a batch of queries.back().batch_size decodes over queries.size() levels,
  // (re)made when its shape changes; a remade slot's graph is dropped (it read the old buffers).
  GraphSlot& graph_slot(int slot_id, const std::vector<cuda::PlanQuery>& queries, int max_pages) {
    const cuda::PlanQuery& q = queries.back();
    GraphSlot& g = ctx_->slots[slot_id];
    if (g.batch == q.batch_size && g.levels.size() == queries.size() && g.max_pages == max_pages &&
        g.num_qo_heads == q.num_qo_heads && g.num_kv_heads == q.num_kv_heads &&
        g.head_dim == q.head_dim && g.page_size == q.page_size)
      return g;
    if (g.batch != 0) {
      synchronize();
      Context::release_slot(g);
      drop_graph(slot_id);
    }
    const size_t B = size_t(q.batch_size), nl = queries.size();
    size_t own_fb = 0, shared_fb = 0;
    std::vector<size_t> int_bytes(nl);
    for (size_t l = 0; l < nl; ++l) {
      size_t fb = 0;
      k_call([&] {
        if (l + 1 == nl)
          cuda::decode_workspace_size(queries[l], &fb, &int_bytes[l]);
        else
          cuda::prefill_workspace_size(queries[l], &fb, &int_bytes[l]);
      });
      size_t& need = l + 1 == nl ? own_fb : shared_fb;
      need = std::max(need, fb);
    }
    Layout lay;
    g.levels.assign(nl, GraphLevel{});
    for (size_t l = 0; l < nl; ++l) {
      GraphLevel& gl = g.levels[l];
      gl.qo_indptr = lay.add((B + 1) * 4);
      gl.kv_indptr = lay.add((B + 1) * 4);
      gl.last_page_len = lay.add(B * 4);
      gl.int_ws_bytes = align_up(int_bytes[l], 16) + 16;
      gl.int_ws = lay.add(gl.int_ws_bytes);
    }
    g.batch_indices = lay.add(B * 4);
    g.positions = lay.add(B * 4);
    g.head_bytes = lay.size;
    // A shared level holds at most one entry per row, each over a prefix of that row's pages.
    for (GraphLevel& gl : g.levels) gl.kv_indices = lay.add(B * size_t(max_pages) * 4);
    g.staging.capacity = align_up(lay.size, 4096);
    cuda_check(cudaHostAlloc(&g.staging.host, g.staging.capacity, cudaHostAllocDefault),
               "cudaHostAlloc (graph plan)");
    std::memset(g.staging.host, 0, g.staging.capacity);
    cuda_check(cudaMalloc(&g.staging.dev, g.staging.capacity), "cudaMalloc (graph plan)");
    cuda_check(cudaEventCreateWithFlags(&g.staging.copied, cudaEventDisableTiming),
               "cudaEventCreate");
    cuda_check(cudaEventRecord(g.staging.copied, s()), "cudaEventRecord");
    g.float_bytes = std::max<size_t>(align_up(own_fb, 256), 256);
    cuda_check(cudaMalloc(&g.float_ws, g.float_bytes), "cudaMalloc (graph split-kv scratch)");
    g.shared_float_bytes = shared_fb;
    g.batch = q.batch_size;
    g.max_pages = max_pages;
    g.num_qo_heads = q.num_qo_heads;
    g.num_kv_heads = q.num_kv_heads;
    g.head_dim = q.head_dim;
    g.page_size = q.page_size;
    return g;
  }

  // The context's graph scratch, at least `bytes` big. A replaced buffer is retired, not freed:
  // graphs captured with it keep reading it (each slot's use of it is fixed).
  void* graph_scratch(size_t bytes) {
    if (bytes > ctx_->graph_scratch_bytes) {
      if (ctx_->graph_scratch) ctx_->retired_scratch.push_back(ctx_->graph_scratch);
      ctx_->graph_scratch = nullptr;
      ctx_->graph_scratch_bytes =
          std::max(align_up(bytes, size_t(1) << 20), 2 * ctx_->graph_scratch_bytes);
      cuda_check(cudaMalloc(&ctx_->graph_scratch, ctx_->graph_scratch_bytes),
                 "cudaMalloc (graph cascade scratch)");
    }
    return ctx_->graph_scratch;
  }

  cudaStream_t s() const { return ctx_->stream; }

  static void dev(const Tensor& t, const char* what) { t.expect_device(Device::CUDA, what); }
  static void bf16(const Tensor& t, const char* what) {
    t.expect_device(Device::CUDA, what);
    t.expect_dtype(DType::BF16, what);
  }
  static void i32(const Tensor& t, const char* what) {
    t.expect_device(Device::CUDA, what);
    t.expect_dtype(DType::I32, what);
    t.expect_contiguous(what);
  }

  static void validate_shape(const AttentionShape& sh) {
    NC_CHECK(sh.num_qo_heads > 0 && sh.num_kv_heads > 0 && sh.num_qo_heads % sh.num_kv_heads == 0,
             "attention: {} query heads are not a multiple of {} kv heads", sh.num_qo_heads,
             sh.num_kv_heads);
    NC_CHECK(cuda::head_dim_supported(sh.head_dim),
             "attention: head_dim {} not supported by the CUDA backend (64, 128)", sh.head_dim);
    NC_CHECK(sh.kv.head_dim == sh.head_dim && sh.kv.num_kv_heads == sh.num_kv_heads,
             "attention: kv cache shape (heads {}, dim {}) does not match attention ({}, {})",
             sh.kv.num_kv_heads, sh.kv.head_dim, sh.num_kv_heads, sh.head_dim);
    NC_CHECK(sh.kv.page_size >= 1 && sh.kv.page_size <= 256,
             "attention: page size {} outside 1..256", sh.kv.page_size);
    NC_CHECK(sh.num_qo_heads <= 64, "attention: more than 64 query heads ({}) not supported",
             sh.num_qo_heads);
  }

  bool use_decode_kernel(const PagedKVBatch& in, int group, const AttentionShape& sh) const {
    if (options_.decode_kernel == DecodeKernel::TensorCores) return false;
    if (!cuda::decode_supported(sh.num_qo_heads, sh.num_kv_heads, sh.head_dim)) return false;
    if (options_.decode_kernel == DecodeKernel::Auto && group >= 4) return false;
    for (int b = 0; b < in.batch_size(); ++b) {
      // The decode kernel takes one query row and at least one key per entry.
      if (in.q_len(b) != 1 || in.num_pages(b) == 0) return false;
    }
    return true;
  }

  // Non-causal levels on FlashInfer's Hopper prefill: by option, NC_SHARED_LEVEL_KERNEL=fa2
  // (Auto only) and what the GPU and head_dim allow. Auto takes it only for entries of 128 rows
  // or more: on the H100 (nc_gpu_bench cascade-ab, 2026-11-27) it beat FA2 at 128 and 256
  // rows (e.g. 205 vs 232 us at prefix 32k) but lost at 64 (245 vs 236 us; 167 vs 131 us GQA).
  bool use_sm90_kernel(const AttentionShape& sh, const PagedKVBatch& level) const {
    if (options_.shared_level_kernel == SharedLevelKernel::FA2) return false;
    if (options_.shared_level_kernel == SharedLevelKernel::Auto) {
      const char* env = std::getenv("NC_SHARED_LEVEL_KERNEL");
      if (env != nullptr && std::string(env) == "fa2") return false;
      int most_rows = 0;
      for (int b = 0; b < level.batch_size(); ++b) most_rows = std::max(most_rows, level.q_len(b));
      if (most_rows < 128) return false;
    }
    return cuda::sm90_prefill_available(sh.num_qo_heads, sh.num_kv_heads, sh.head_dim);
  }

  void fill_metadata(CudaAttentionPlan& plan, const AttentionStep& step) {
    auto put = [&](size_t off, const std::vector<int32_t>& v) {
      if (!v.empty()) std::memcpy(plan.host_i32(off), v.data(), v.size() * 4);
    };
    for (size_t l = 0; l < step.levels.size(); ++l) {
      const PagedKVBatch& in = step.levels[l];
      const LevelPlan& lp = plan.levels[l];
      put(lp.qo_indptr, in.qo_indptr);
      put(lp.kv_indptr, in.kv_indptr);
      put(lp.kv_indices, in.kv_indices);
      put(lp.last_page_len, in.kv_last_page_len);
    }
    // Row i of entry b is appended at position kv_len - q_len + i of that entry.
    const PagedKVBatch& last = step.levels.back();
    int32_t* bi = plan.host_i32(plan.batch_indices);
    int32_t* pos = plan.host_i32(plan.positions);
    for (int b = 0; b < last.batch_size(); ++b) {
      const int kv_len = last.kv_len(b, plan.shape.kv.page_size), q_len = last.q_len(b);
      for (int i = 0; i < q_len; ++i) {
        bi[last.qo_indptr[b] + i] = b;
        pos[last.qo_indptr[b] + i] = kv_len - q_len + i;
      }
    }
  }

  cuda::PlanWorkspace workspace(const CudaAttentionPlan& plan, const LevelPlan& lp) const {
    cuda::PlanWorkspace ws;
    // Levels on the side stream run concurrently with the main stream's: their own scratch.
    // A graph plan's levels bring their own (fixed) scratch.
    if (lp.float_ws) {
      ws.float_ws = lp.float_ws;
      ws.float_bytes = lp.float_bytes;
    } else if (lp.side) {
      ws.float_ws = ctx_->side_float_ws;
      ws.float_bytes = ctx_->side_float_bytes;
    } else {
      ws.float_ws = ctx_->attn_float_ws;
      ws.float_bytes = ctx_->attn_float_bytes;
    }
    ws.int_ws = static_cast<char*>(plan.staging_.dev) + lp.int_ws;
    ws.int_pinned = static_cast<char*>(plan.staging_.host) + lp.int_ws;
    ws.int_bytes = lp.int_ws_bytes;
    return ws;
  }

  void* scratch(CudaAttentionPlan& plan, size_t bytes) {
    void* p = nullptr;
    cuda_check(cudaMallocAsync(&p, std::max<size_t>(bytes, 16), ctx_->stream), "attention scratch");
    plan.scratch_.push_back(p);
    return p;
  }

  cuda::PagedKV paged(const CudaAttentionPlan& plan, const LevelPlan& lp,
                      const Tensor& pages) const {
    cuda::PagedKV kv;
    kv.pages = pages.data();
    kv.num_kv_heads = plan.shape.num_kv_heads;
    kv.page_size = plan.shape.kv.page_size;
    kv.head_dim = plan.shape.head_dim;
    kv.hnd = plan.shape.kv.layout == KVLayout::HND;
    kv.batch_size = lp.batch_size;
    kv.indptr = plan.dev_i32(lp.kv_indptr);
    kv.indices = plan.dev_i32(lp.kv_indices);
    kv.last_page_len = plan.dev_i32(lp.last_page_len);
    return kv;
  }

  // The shared levels of an overlapped plan, on the side stream after everything queued so far on
  // the main one (q, the plan's metadata copy): the first into (level_out, lse_level), each
  // further one into the second state and merged into the first. Records ctx_->join at the end.
  void run_shared_levels_on_side(const CudaAttentionPlan& plan, const Tensor& pages,
                                 const Tensor& q) {
    cudaStream_t side = ctx_->side;
    cuda_check(cudaEventRecord(ctx_->fork, ctx_->stream), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(side, ctx_->fork), "cudaStreamWaitEvent");
    bool first = true;
    for (size_t l = 0; l + 1 < plan.levels.size(); ++l) {
      const LevelPlan& lp = plan.levels[l];
      if (lp.batch_size == 0) continue;
      run_level(plan, lp, pages, q, first ? plan.level_out : plan.level_out2,
                first ? plan.lse_level : plan.lse_level2, side);
      if (!first) {
        k_call([&] {
          cuda::merge_state_inplace(plan.level_out, plan.lse_level, plan.level_out2,
                                    plan.lse_level2, plan.num_tokens, plan.shape.num_qo_heads,
                                    plan.shape.head_dim, side);
        });
      }
      first = false;
    }
    cuda_check(cudaEventRecord(ctx_->join, side), "cudaEventRecord");
  }

  void run_level(const CudaAttentionPlan& plan, const LevelPlan& lp, const Tensor& pages,
                 const Tensor& q, void* out, float* lse, cudaStream_t stream) {
    cuda::AttnIO io;
    io.q = q.data();
    io.o = out;
    io.lse = lse;
    io.num_qo_heads = plan.shape.num_qo_heads;
    io.sm_scale = plan.shape.sm_scale;
    const cuda::PlanWorkspace ws = workspace(plan, lp);
    const cuda::PagedKV kv = paged(plan, lp, pages);
    k_call([&] {
      if (lp.decode)
        cuda::decode_run(lp.info, ws, kv, io, stream);
      else if (lp.sm90)
        cuda::sm90_prefill_run(lp.info, ws, kv, io, stream);
      else
        cuda::prefill_run(lp.info, ws, kv, plan.dev_i32(lp.qo_indptr), io, lp.causal, stream);
    });
  }

  // cos/sin must be float32 for FlashInfer. A table uploaded as bf16 (upload() converts to the
  // backend dtype) is widened on every call into a reused buffer (cheap next to attention; no
  // cache keyed by address, which a freed and reallocated table could alias). It then carries
  // bf16 rounding: prefer an f32 table (alloc F32 + copy_from_host).
  const float* rope_table(const Tensor& cos_sin) {
    if (cos_sin.dtype() == DType::F32) return cos_sin.ptr<float>();
    NC_CHECK(cos_sin.dtype() == DType::BF16, "rope: cos/sin table dtype {} not supported",
             dtype_name(cos_sin.dtype()));
    if (rope_f32_.numel() < cos_sin.numel()) rope_f32_ = alloc({cos_sin.numel()}, DType::F32);
    k_call(
        [&] { cuda::bf16_to_f32(cos_sin.data(), rope_f32_.ptr<float>(), cos_sin.numel(), s()); });
    return rope_f32_.ptr<float>();
  }

  void gemm(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, int64_t N, int64_t M,
            int64_t K) {
    const int align = pointer_alignment({x.data(), w.data(), out.data(), bias.data()});
    const GemmKey key{N, M, K, bias.defined(), out.dtype() == DType::F32, align};
    auto it = gemms_.find(key);
    if (it == gemms_.end()) it = gemms_.emplace(key, make_gemm(key)).first;
    GemmPlan& g = it->second;
    if (bias.defined()) {
      const void* bp = bias.data();
      cublas_check(cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp,
                                                  sizeof(bp)),
                   "bias pointer");
    }
    const float alpha = 1.0f, beta = 0.0f;
    // Column-major view: out^T [M, N] = W [M, K] (stored as K x M, transposed) * x^T [K, N].
    cublas_check(cublasLtMatmul(ctx_->lt, g.desc, &alpha, w.data(), g.a, x.data(), g.b, &beta,
                                out.data(), g.c, out.data(), g.c, &g.algo, ctx_->lt_workspace,
                                ctx_->lt_workspace_bytes, ctx_->stream),
                 "cublasLtMatmul");
  }

  GemmPlan make_gemm(const GemmKey& key) {
    GemmPlan g;
    cublas_check(cublasLtMatmulDescCreate(&g.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublas_check(
        cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)),
        "transa");
    cublas_check(
        cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)),
        "transb");
    if (key.bias) {
      const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
      cublas_check(
          cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)),
          "epilogue");
      const cudaDataType_t bt = key.f32_out ? CUDA_R_32F : CUDA_R_16BF;
      cublas_check(cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
                                                  sizeof(bt)),
                   "bias type");
    }
    cublas_check(cublasLtMatrixLayoutCreate(&g.a, CUDA_R_16BF, key.k, key.m, key.k), "layout a");
    cublas_check(cublasLtMatrixLayoutCreate(&g.b, CUDA_R_16BF, key.k, key.n, key.k), "layout b");
    cublas_check(cublasLtMatrixLayoutCreate(&g.c, key.f32_out ? CUDA_R_32F : CUDA_R_16BF, key.m,
                                            key.n, key.m),
                 "layout c");
    cublasLtMatmulPreference_t pref;
    cublas_check(cublasLtMatmulPreferenceCreate(&pref), "preference");
    const uint64_t ws = ctx_->lt_workspace_bytes;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                         sizeof(ws));
    const uint32_t al = uint32_t(key.align);
    for (auto attr :
         {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
      cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof(al));
    }
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(ctx_->lt, g.desc, g.a, g.b, g.c, g.c,
                                                             pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    NC_CHECK(st == CUBLAS_STATUS_SUCCESS && found > 0,
             "linear: cuBLASLt has no bf16 algorithm for [{}, {}] x [{}, {}]^T (status {})", key.n,
             key.k, key.m, key.k, int(st));
    g.algo = result.algo;
    return g;
  }

  CudaBackendOptions options_;
  std::shared_ptr<Context> ctx_;
  std::string name_;
  std::map<GemmKey, GemmPlan> gemms_;
  Tensor rope_f32_;
  Tensor filter_ws_;  // sample_filtered's scratch, from reserve_sampling()
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device_index, const CudaBackendOptions& options) {
  return std::make_unique<CudaBackend>(device_index, options);
}

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
  return make_cuda_backend(device_index, CudaBackendOptions{});
}

std::vector<bool> cuda_plan_uses_decode_kernel(const AttentionPlan& plan) {
  const auto* p = dynamic_cast<const CudaAttentionPlan*>(&plan);
  NC_CHECK(p != nullptr, "cuda_plan_uses_decode_kernel: not a CUDA plan");
  std::vector<bool> out;
  for (const LevelPlan& lp : p->levels) out.push_back(lp.decode);
  return out;
}

std::vector<bool> cuda_plan_uses_sm90_prefill(const AttentionPlan& plan) {
  const auto* p = dynamic_cast<const CudaAttentionPlan*>(&plan);
  NC_CHECK(p != nullptr, "cuda_plan_uses_sm90_prefill: not a CUDA plan");
  std::vector<bool> out;
  for (const LevelPlan& lp : p->levels) out.push_back(lp.sm90);
  return out;
}

}  // namespace nc

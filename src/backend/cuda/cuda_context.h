// The CUDA backend's device context and memory: the state that the backend, its tensors' deleters,
// its attention plans and its pending sampled ids share (they may outlive the backend, so they
// hold it through a shared_ptr).
//
// Invariants: all work is enqueued on `stream`, except cascade levels that overlap the own level
// on `side` (forked from and joined back to `stream` with the fork/join events). Staging buffers
// come from one pool; a pooled buffer is handed out only once its last asynchronous copy has run,
// so the host may rewrite it at once. cuda_check/k_call turn CUDA and kernels.h failures into
// nc::Error naming the call that failed.
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace nc::cuda_host {

void cuda_check(cudaError_t e, const char* what);
void cublas_check(cublasStatus_t s, const char* what);

// Sets one attribute of a cuBLASLt matmul descriptor (nc::Error naming `what` on failure).
template <typename T>
void set_lt_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& value,
                 const char* what) {
  cublas_check(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(value)), what);
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

inline size_t align_up(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

// Argument checks shared by the backend's parts (nc::Error naming `what`).
inline void expect_cuda(const Tensor& t, const char* what) {
  t.expect_device(Device::CUDA, what);
}
inline void expect_bf16(const Tensor& t, const char* what) {
  t.expect_device(Device::CUDA, what);
  t.expect_dtype(DType::BF16, what);
}
inline void expect_i32(const Tensor& t, const char* what) {
  t.expect_device(Device::CUDA, what);
  t.expect_dtype(DType::I32, what);
  t.expect_contiguous(what);
}

// A base for the parts that own device resources: they are neither copied nor moved.
class NonCopyable {
 public:
  NonCopyable() = default;
  NonCopyable(const NonCopyable&) = delete;
  NonCopyable& operator=(const NonCopyable&) = delete;
};

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
// Waits for the staging's last copy, then frees it (and resets it to empty).
void release_staging(Staging& s);

// A split-KV float workspace that only grows (FlashInfer's scratch for one stream's levels).
struct FloatWorkspace {
  void* ptr = nullptr;
  size_t bytes = 0;
  // Grows to at least `need` (cudaFree waits for the device: no queued kernel uses the old one).
  void ensure(size_t need);
};

struct Context {
  int device = 0;
  std::string name;  // "cuda:<index> (<device name>)"
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  // cuBLAS proper, for its strided-batched GEMM (MLA's per-head projections); bound to `stream`
  // and to lt_workspace (stream-ordered, so the two libraries share it; never a hidden
  // allocation inside a graph capture).
  cublasHandle_t blas = nullptr;
  void* lt_workspace = nullptr;
  size_t lt_workspace_bytes = size_t(32) << 20;
  FloatWorkspace attn_ws;  // split-KV scratch of the main stream's levels (runs are stream-ordered)
  // Cascade levels overlapped with the own level: a second stream, its own split-KV scratch
  // (both streams' kernels run at once), and the events that fork and join it.
  cudaStream_t side = nullptr;
  FloatWorkspace side_ws;
  cudaEvent_t fork = nullptr, join = nullptr;

  ~Context();
  void ensure_side_stream();
  void synchronize() const;

  // A staging buffer of at least `bytes`, whose last copy has completed.
  Staging acquire_staging(size_t bytes);
  // Back to the pool (any thread: plans may be destroyed elsewhere); the pool keeps a few.
  void return_staging(Staging s);

 private:
  std::vector<Staging> free_staging_;
  std::mutex mu_;  // guards free_staging_
};

// Opens device `device_index`: its stream, cuBLASLt handle and workspace; freed blocks stay in
// the stream-ordered pool (release threshold: unlimited).
std::shared_ptr<Context> open_device(int device_index);
// Free device memory after handing the pool's cached blocks back to the driver (synchronises).
int64_t device_free_memory_bytes(const Context& ctx);
// A device tensor from the stream-ordered pool (at least 16 bytes), freed in stream order.
Tensor device_alloc(const std::shared_ptr<Context>& ctx, const Shape& shape, DType dtype);

// A staging buffer taken from the context's pool and given back when this goes away.
class PooledStaging {
 public:
  PooledStaging() = default;
  PooledStaging(std::shared_ptr<Context> ctx, size_t bytes)
      : ctx_(std::move(ctx)), s_(ctx_->acquire_staging(bytes)) {}
  PooledStaging(PooledStaging&& o) noexcept : ctx_(std::move(o.ctx_)), s_(o.s_) { o.s_ = {}; }
  PooledStaging& operator=(PooledStaging&& o) noexcept {
    if (this != &o) {
      give_back();
      ctx_ = std::move(o.ctx_);
      s_ = o.s_;
      o.s_ = {};
    }
    return *this;
  }
  PooledStaging(const PooledStaging&) = delete;
  ~PooledStaging() { give_back(); }
  const Staging& get() const { return s_; }
  void give_back() {
    if (s_.host) ctx_->return_staging(s_);
    s_ = {};
  }

 private:
  std::shared_ptr<Context> ctx_;
  Staging s_;
};

}  // namespace nc::cuda_host

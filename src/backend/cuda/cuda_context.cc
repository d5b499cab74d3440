// Device context and memory of the CUDA backend (cuda_context.h).
#include "backend/cuda/cuda_context.h"

#include <fmt/format.h>

#include <cstdint>

namespace nc::cuda_host {

void cuda_check(cudaError_t e, const char* what) {
  NC_CHECK(e == cudaSuccess, "cuda backend: {}: {}", what, cudaGetErrorString(e));
}

void cublas_check(cublasStatus_t s, const char* what) {
  NC_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuda backend: {}: cuBLAS status {}", what, int(s));
}

void release_staging(Staging& s) {
  if (s.copied) cudaEventSynchronize(s.copied), cudaEventDestroy(s.copied);
  if (s.host) cudaFreeHost(s.host);
  if (s.dev) cudaFree(s.dev);
  s = Staging{};
}

void FloatWorkspace::ensure(size_t need) {
  if (need <= bytes) return;
  // cudaFree waits for the device, so no queued kernel still uses the old buffer.
  if (ptr) cuda_check(cudaFree(ptr), "cudaFree");
  ptr = nullptr;
  bytes = 0;  // until the new buffer exists: a failed allocation leaves an empty workspace
  const size_t want = std::max(align_up(need, size_t(1) << 20), size_t(32) << 20);
  cuda_check(cudaMalloc(&ptr, want), "cudaMalloc (attention workspace)");
  bytes = want;
}

Context::~Context() {
  cudaSetDevice(device);
  cudaStreamSynchronize(stream);
  if (side) cudaStreamSynchronize(side);
  for (Staging& s : free_staging_) release_staging(s);
  if (attn_ws.ptr) cudaFree(attn_ws.ptr);
  if (side_ws.ptr) cudaFree(side_ws.ptr);
  if (fork) cudaEventDestroy(fork);
  if (join) cudaEventDestroy(join);
  if (side) cudaStreamDestroy(side);
  if (blas) cublasDestroy(blas);  // before the workspace both handles use
  if (lt) cublasLtDestroy(lt);
  if (lt_workspace) cudaFree(lt_workspace);
  if (stream) cudaStreamDestroy(stream);
}

void Context::ensure_side_stream() {
  if (side) return;
  cuda_check(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking), "cudaStreamCreate");
  cuda_check(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming), "cudaEventCreate");
  cuda_check(cudaEventCreateWithFlags(&join, cudaEventDisableTiming), "cudaEventCreate");
}

void Context::synchronize() const {
  cuda_check(cudaStreamSynchronize(stream), "synchronize (an earlier kernel failed)");
}

Staging Context::acquire_staging(size_t bytes) {
  Staging s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto best = free_staging_.end();
    for (auto it = free_staging_.begin(); it != free_staging_.end(); ++it) {
      if (it->capacity >= bytes && (best == free_staging_.end() || it->capacity < best->capacity))
        best = it;
    }
    if (best != free_staging_.end()) {
      s = *best;
      free_staging_.erase(best);
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

void Context::return_staging(Staging s) {
  std::lock_guard<std::mutex> lock(mu_);
  free_staging_.push_back(s);
  // Keep the pool small: a few plans and sampled-id copies are alive at a time.
  while (free_staging_.size() > 8) {
    release_staging(free_staging_.front());
    free_staging_.erase(free_staging_.begin());
  }
}

std::shared_ptr<Context> open_device(int device_index) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  NC_CHECK(e == cudaSuccess && count > 0, "make_cuda_backend: no CUDA device ({})",
           e == cudaSuccess ? "none found" : cudaGetErrorString(e));
  NC_CHECK(device_index >= 0 && device_index < count,
           "make_cuda_backend: device {} outside [0, {})", device_index, count);
  auto ctx = std::make_shared<Context>();
  ctx->device = device_index;
  cuda_check(cudaSetDevice(device_index), "cudaSetDevice");
  cuda_check(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  cublas_check(cublasLtCreate(&ctx->lt), "cublasLtCreate");
  cuda_check(cudaMalloc(&ctx->lt_workspace, ctx->lt_workspace_bytes), "cudaMalloc");
  cublas_check(cublasCreate(&ctx->blas), "cublasCreate");
  cublas_check(cublasSetStream(ctx->blas, ctx->stream), "cublasSetStream");  // before the workspace
  cublas_check(cublasSetWorkspace(ctx->blas, ctx->lt_workspace, ctx->lt_workspace_bytes),
               "cublasSetWorkspace");
  // Split-K partial sums stay in float32 (not the bf16 output type), as every other GEMM here.
  cublas_check(
      cublasSetMathMode(ctx->blas, cublasMath_t(CUBLAS_DEFAULT_MATH |
                                                CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)),
      "cublasSetMathMode");
  // Keep freed blocks in the stream-ordered pool instead of returning them to the driver.
  cudaMemPool_t pool;
  cuda_check(cudaDeviceGetDefaultMemPool(&pool, device_index), "cudaDeviceGetDefaultMemPool");
  uint64_t threshold = UINT64_MAX;
  cuda_check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold),
             "cudaMemPoolSetAttribute");
  cudaDeviceProp prop{};
  cuda_check(cudaGetDeviceProperties(&prop, device_index), "cudaGetDeviceProperties");
  ctx->name = fmt::format("cuda:{} ({})", device_index, prop.name);
  return ctx;
}

// The engine sizes its KV cache from the memory free once the weights and workspace are in
// place. Blocks freed into the stream-ordered pool stay reserved by it (release threshold
// above), so they are handed back to the driver before asking.
int64_t device_free_memory_bytes(const Context& ctx) {
  cuda_check(cudaSetDevice(ctx.device), "cudaSetDevice");
  cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  cudaMemPool_t p;
  cuda_check(cudaDeviceGetDefaultMemPool(&p, ctx.device), "cudaDeviceGetDefaultMemPool");
  cuda_check(cudaMemPoolTrimTo(p, 0), "cudaMemPoolTrimTo");
  size_t free_b = 0, total_b = 0;
  cuda_check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  return int64_t(free_b);
}

Tensor device_alloc(const std::shared_ptr<Context>& ctx, const Shape& shape, DType dtype) {
  int64_t n = 1;
  for (int64_t d : shape) {
    NC_CHECK(d >= 0, "alloc: negative dimension in {}", shape_str(shape));
    n *= d;
  }
  const size_t bytes = std::max<size_t>(size_t(n) * dtype_size(dtype), 16);
  void* p = nullptr;
  cudaError_t e = cudaMallocAsync(&p, bytes, ctx->stream);
  NC_CHECK(e == cudaSuccess, "alloc: cannot allocate {} bytes on the GPU for {}: {}", bytes,
           shape_str(shape), cudaGetErrorString(e));
  std::shared_ptr<void> storage(p, [ctx](void* q) { cudaFreeAsync(q, ctx->stream); });
  return Tensor::adopt(std::move(storage), shape, dtype, Device::CUDA);
}

}  // namespace nc::cuda_host

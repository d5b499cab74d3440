// The CUDA backend's host-tier copies (Backend::alloc_host_buffer, copy_kv_pages,
// sync_kv_copies): page-locked host memory and a copy stream of its own.
//
// Ordering: each copy_kv_pages batch records an event on the main stream and makes the copy
// stream wait for it (so a page offloaded now holds everything the steps enqueued before wrote),
// enqueues the batch's copies in order (a run of consecutive device and host pages is one 2-D
// copy per layer), records an event on the copy stream and makes the main stream wait for it (so
// the next step neither overwrites a page before its offload has read it nor reads a restored page
// before it has arrived). The host never waits; the copies overlap whatever the main stream runs
// before the next step's kernels.
#pragma once
#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"

namespace nc::cuda_host {

class KvCopier : NonCopyable {
 public:
  explicit KvCopier(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}
  ~KvCopier();

  std::unique_ptr<HostBuffer> alloc_host(int64_t bytes);
  void copy(const std::vector<Tensor>& layers, std::span<const KVPageCopy> copies,
            HostBuffer& host);
  void sync();

 private:
  void ensure_stream();

  std::shared_ptr<Context> ctx_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t after_main_ = nullptr, done_ = nullptr;
};

}  // namespace nc::cuda_host

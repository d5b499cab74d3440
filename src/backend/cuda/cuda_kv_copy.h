// The CUDA backend's host-tier copies (Backend::alloc_host_buffer, copy_kv_pages,
// sync_kv_copies): page-locked host memory and a copy stream of its own.
//
// Ordering: each copy_kv_pages batch records an event on the main stream and makes the copy
// stream wait for it (so a page offloaded now holds everything the steps enqueued before wrote),
// enqueues the batch's copies in order, records an event on the copy stream and makes the main
// stream wait for it (so the next step neither overwrites a page before its offload has read it nor
// reads a restored page before it has arrived). The host never waits; the copies overlap whatever
// the main stream runs before the next step's kernels.
//
// Copies go through a device staging buffer of page images (64 MiB, or one image if larger;
// allocated at the first copy, freed with the copier): a restore copies host images in, one copy
// per run of consecutive host pages, and a kernel scatters them to their device pages; an offload
// gathers and copies out. So scattered device pages move at the link's rate, not at the driver's
// rate of one small copy per page and layer. A chunk holds up to 64 images of one direction and
// never writes a page twice, so the batch's result is that of its copies one after another.
#pragma once
#include <algorithm>
#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kv_copy_kernels.h"

namespace nc::cuda_host {

class KvCopier : NonCopyable {
 public:
  explicit KvCopier(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}
  ~KvCopier();

  std::unique_ptr<HostBuffer> alloc_host(int64_t bytes);
  void copy(const std::vector<Tensor>& layers, std::span<const KVPageCopy> copies,
            HostBuffer& host);
  void sync();
  // The staging buffer's size for page images of `image_bytes` (the memory plan counts it).
  static int64_t staging_bytes(int64_t image_bytes) { return std::max(kStagingBytes, image_bytes); }

 private:
  static constexpr int64_t kStagingBytes = int64_t(64) << 20;

  void ensure_stream();
  void ensure_staging(int64_t image_bytes);
  static size_t chunk_length(std::span<const KVPageCopy> copies, size_t cap);
  void move_chunk(cuda::KvPageMoves& moves, std::span<const KVPageCopy> chunk, HostBuffer& host,
                  int64_t image);

  std::shared_ptr<Context> ctx_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t after_main_ = nullptr, done_ = nullptr;
  void* staging_ = nullptr;
  int64_t staging_bytes_ = 0;
};

}  // namespace nc::cuda_host

#include "backend/cuda/cuda_kv_copy.h"

#include <algorithm>

#include "backend/op_checks.h"

namespace nc::cuda_host {
namespace {

// Page-locked memory; freed once no copy can still use it.
class PinnedHostBuffer : public HostBuffer {
 public:
  PinnedHostBuffer(int device, int64_t bytes) : device_(device), bytes_(bytes) {
    NC_CHECK(bytes > 0, "host buffer: size must be positive, got {}", bytes);
    cuda_check(cudaSetDevice(device), "cudaSetDevice (host kv tier)");
    void* p = nullptr;
    const cudaError_t e = cudaHostAlloc(&p, size_t(bytes), cudaHostAllocDefault);
    NC_CHECK(e == cudaSuccess, "host kv tier: cannot pin {} bytes of host memory ({})", bytes,
             cudaGetErrorString(e));
    data_ = static_cast<std::byte*>(p);
  }
  ~PinnedHostBuffer() override {
    cudaSetDevice(device_);
    cudaDeviceSynchronize();  // no copy may still read or write it
    cudaFreeHost(data_);
  }
  std::byte* data() override { return data_; }
  int64_t bytes() const override { return bytes_; }

 private:
  int device_ = 0;
  std::byte* data_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace

KvCopier::~KvCopier() {
  if (!stream_) return;
  cudaSetDevice(ctx_->device);
  cudaStreamSynchronize(stream_);
  cudaEventDestroy(after_main_);
  cudaEventDestroy(done_);
  if (staging_) cudaFree(staging_);
  cudaStreamDestroy(stream_);
}

void KvCopier::ensure_stream() {
  if (stream_) return;
  cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "kv copy stream");
  cuda_check(cudaEventCreateWithFlags(&after_main_, cudaEventDisableTiming), "kv copy event");
  cuda_check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "kv copy event");
}

std::unique_ptr<HostBuffer> KvCopier::alloc_host(int64_t bytes) {
  return std::make_unique<PinnedHostBuffer>(ctx_->device, bytes);
}

void KvCopier::ensure_staging(int64_t image_bytes) {
  const int64_t want = staging_bytes(image_bytes);
  if (staging_bytes_ >= want) return;
  if (staging_) {
    cuda_check(cudaStreamSynchronize(stream_), "kv copy: synchronize");
    cuda_check(cudaFree(staging_), "kv copy: free staging");
    staging_ = nullptr;
  }
  cuda_check(cudaMalloc(&staging_, size_t(want)), "kv copy: staging buffer");
  staging_bytes_ = want;
}

void KvCopier::copy(const std::vector<Tensor>& layers, std::span<const KVPageCopy> copies,
                    HostBuffer& host) {
  if (copies.empty()) return;
  for (const Tensor& t : layers) expect_cuda(t, "copy_kv_pages");
  const KvCopyGeometry g = check_kv_page_copies(layers, copies, host);
  NC_CHECK(g.num_layers <= cuda::kKvMoveMaxLayers,
           "copy_kv_pages: {} layers, the CUDA page moves take at most {}", g.num_layers,
           cuda::kKvMoveMaxLayers);
  const int64_t image = g.layer_page_bytes * g.num_layers;
  ensure_stream();
  ensure_staging(image);
  cuda::KvPageMoves moves;
  moves.num_layers = int32_t(g.num_layers);
  moves.layer_page_bytes = g.layer_page_bytes;
  for (size_t l = 0; l < layers.size(); ++l) moves.layers[l] = layers[l].data();
  cuda_check(cudaEventRecord(after_main_, ctx_->stream), "kv copy: record");
  cuda_check(cudaStreamWaitEvent(stream_, after_main_, 0), "kv copy: wait");
  const size_t cap = size_t(std::min<int64_t>(cuda::kKvMoveMaxPages, staging_bytes_ / image));
  for (size_t i = 0; i < copies.size();) {
    const size_t n = chunk_length(copies.subspan(i), cap);
    move_chunk(moves, copies.subspan(i, n), host, image);
    i += n;
  }
  cuda_check(cudaEventRecord(done_, stream_), "kv copy: record");
  cuda_check(cudaStreamWaitEvent(ctx_->stream, done_, 0), "kv copy: join");
}

// The longest prefix of `copies` (at most `cap`) that moves as one chunk with the same result as
// one copy after another: one direction, and no page written twice (a device page by restores,
// a host page by offloads), since a chunk's writes land in no particular order.
size_t KvCopier::chunk_length(std::span<const KVPageCopy> copies, size_t cap) {
  size_t n = 1;
  for (; n < copies.size() && n < cap; ++n) {
    if (copies[n].to_host != copies[0].to_host) break;
    const auto same_page = [&](const KVPageCopy& c) {
      return copies[0].to_host ? c.host_page == copies[n].host_page
                               : c.device_page == copies[n].device_page;
    };
    if (std::any_of(copies.begin(), copies.begin() + std::ptrdiff_t(n), same_page)) break;
  }
  return n;
}

// One chunk through the staging buffer: restores copy host images in (one copy per run of
// consecutive host pages, at the link's rate) and scatter them on the device; offloads gather
// on the device and copy the images out. Page-by-page 2-D copies per layer cost a few
// microseconds of driver time each (0.32 of the link's rate for scattered pages, H100).
void KvCopier::move_chunk(cuda::KvPageMoves& moves, std::span<const KVPageCopy> chunk,
                          HostBuffer& host, int64_t image) {
  moves.num_pages = int32_t(chunk.size());
  for (size_t i = 0; i < chunk.size(); ++i) moves.device_page[i] = chunk[i].device_page;
  const bool to_host = chunk[0].to_host;
  if (to_host) k_call([&] { cuda::kv_pages_to_staging(moves, staging_, stream_); });
  for (size_t i = 0; i < chunk.size();) {
    size_t j = i + 1;
    while (j < chunk.size() && chunk[j].host_page == chunk[j - 1].host_page + 1) ++j;
    std::byte* h = host.data() + chunk[i].host_page * image;
    std::byte* d = static_cast<std::byte*>(staging_) + int64_t(i) * image;
    const size_t bytes = size_t(int64_t(j - i) * image);
    const cudaError_t e = to_host ? cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, stream_)
                                  : cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, stream_);
    cuda_check(e, "kv copy: cudaMemcpyAsync");
    i = j;
  }
  if (!to_host) k_call([&] { cuda::kv_pages_from_staging(moves, staging_, stream_); });
}

void KvCopier::sync() {
  if (stream_) cuda_check(cudaStreamSynchronize(stream_), "kv copy: synchronize");
}

}  // namespace nc::cuda_host

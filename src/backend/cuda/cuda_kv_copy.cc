#include "backend/cuda/cuda_kv_copy.h"

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

void KvCopier::copy(const std::vector<Tensor>& layers, std::span<const KVPageCopy> copies,
                    HostBuffer& host) {
  if (copies.empty()) return;
  for (const Tensor& t : layers) expect_cuda(t, "copy_kv_pages");
  const KvCopyGeometry g = check_kv_page_copies(layers, copies, host);
  const int64_t num_layers = g.num_layers, lb = g.layer_page_bytes;
  ensure_stream();
  cuda_check(cudaEventRecord(after_main_, ctx_->stream), "kv copy: record");
  cuda_check(cudaStreamWaitEvent(stream_, after_main_, 0), "kv copy: wait");
  // Runs of consecutive device and host pages in one direction: one 2-D copy per layer (the
  // host pitch is a whole host page, all layers; the device pitch one layer's page).
  const size_t pitch_host = size_t(lb * num_layers);
  for (size_t i = 0; i < copies.size();) {
    size_t j = i + 1;
    while (j < copies.size() && copies[j].to_host == copies[i].to_host &&
           copies[j].device_page == copies[j - 1].device_page + 1 &&
           copies[j].host_page == copies[j - 1].host_page + 1)
      ++j;
    const KVPageCopy& c = copies[i];
    for (int64_t l = 0; l < num_layers; ++l) {
      std::byte* dev = static_cast<std::byte*>(layers[size_t(l)].data()) + c.device_page * lb;
      std::byte* h = host.data() + (c.host_page * num_layers + l) * lb;
      const cudaError_t e = c.to_host
                                ? cudaMemcpy2DAsync(h, pitch_host, dev, size_t(lb), size_t(lb),
                                                    j - i, cudaMemcpyDeviceToHost, stream_)
                                : cudaMemcpy2DAsync(dev, size_t(lb), h, pitch_host, size_t(lb),
                                                    j - i, cudaMemcpyHostToDevice, stream_);
      cuda_check(e, "kv copy: cudaMemcpy2DAsync");
    }
    i = j;
  }
  cuda_check(cudaEventRecord(done_, stream_), "kv copy: record");
  cuda_check(cudaStreamWaitEvent(ctx_->stream, done_, 0), "kv copy: join");
}

void KvCopier::sync() {
  if (stream_) cuda_check(cudaStreamSynchronize(stream_), "kv copy: synchronize");
}

}  // namespace nc::cuda_host

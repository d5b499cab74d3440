// The host tier's default copies (backend.h: alloc_host_buffer, copy_kv_pages): plain memory
// and memcpy, for backends whose tensors live in host memory (the CPU backend).
#include <cstdlib>
#include <cstring>

#include "backend/backend.h"
#include "core/error.h"

namespace nc {
namespace {

class PlainHostBuffer : public HostBuffer {
 public:
  explicit PlainHostBuffer(int64_t bytes) : bytes_(bytes) {
    NC_CHECK(bytes > 0, "host buffer: size must be positive, got {}", bytes);
    const size_t rounded = (size_t(bytes) + 63) / 64 * 64;
    data_ = static_cast<std::byte*>(std::aligned_alloc(64, rounded));
    NC_CHECK(data_ != nullptr, "host buffer: cannot allocate {} bytes", bytes);
  }
  ~PlainHostBuffer() override { std::free(data_); }
  std::byte* data() override { return data_; }
  int64_t bytes() const override { return bytes_; }

 private:
  std::byte* data_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace

std::unique_ptr<HostBuffer> plain_host_buffer(int64_t bytes) {
  return std::make_unique<PlainHostBuffer>(bytes);
}

std::unique_ptr<HostBuffer> Backend::alloc_host_buffer(int64_t bytes) {
  return plain_host_buffer(bytes);
}

void Backend::copy_kv_pages(const std::vector<Tensor>& layers, std::span<const KVPageCopy> copies,
                            HostBuffer& host) {
  if (copies.empty()) return;
  NC_CHECK(!layers.empty(), "copy_kv_pages: no KV layers");
  const int64_t num_layers = int64_t(layers.size());
  const int64_t num_pages = layers[0].shape()[0];
  const int64_t lb = int64_t(layers[0].nbytes()) / num_pages;  // one layer's page
  for (const Tensor& t : layers) {
    t.expect_device(Device::CPU, "copy_kv_pages");
    t.expect_contiguous("copy_kv_pages");
    NC_CHECK(t.shape()[0] == num_pages && int64_t(t.nbytes()) == lb * num_pages,
             "copy_kv_pages: layers of different shapes");
  }
  const int64_t host_pages = host.bytes() / (lb * num_layers);
  for (const KVPageCopy& c : copies) {
    NC_CHECK(c.device_page >= 0 && c.device_page < num_pages && c.host_page >= 0 &&
                 c.host_page < host_pages,
             "copy_kv_pages: device page {} (of {}) or host page {} (of {}) out of range",
             c.device_page, num_pages, c.host_page, host_pages);
    for (int64_t l = 0; l < num_layers; ++l) {
      std::byte* dev = static_cast<std::byte*>(layers[size_t(l)].data()) + c.device_page * lb;
      std::byte* h = host.data() + (c.host_page * num_layers + l) * lb;
      if (c.to_host) {
        std::memcpy(h, dev, size_t(lb));
      } else {
        std::memcpy(dev, h, size_t(lb));
      }
    }
  }
}

}  // namespace nc

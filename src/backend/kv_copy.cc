// The host tier's default copies (backend.h: alloc_host_buffer, copy_kv_pages): plain memory
// and memcpy, for backends whose tensors live in host memory (the CPU backend).
#include <cstdlib>
#include <cstring>

#include "backend/backend.h"
#include "backend/op_checks.h"
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
  for (const Tensor& t : layers) t.expect_device(Device::CPU, "copy_kv_pages");
  const KvCopyGeometry g = check_kv_page_copies(layers, copies, host);
  const int64_t num_layers = g.num_layers, lb = g.layer_page_bytes;  // lb: one layer's page
  for (const KVPageCopy& c : copies) {
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

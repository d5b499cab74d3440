// The host tier's page moves between a staging buffer of page images and the layers' pages
// (kv_copy_kernels.h): one block per (page, layer), 16-byte accesses where the page allows.
#include <cstddef>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/kv_copy_kernels.h"

namespace nc::cuda {
namespace {

__device__ void copy_bytes(std::byte* dst, const std::byte* src, int64_t bytes) {
  const bool wide =
      (reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src) | uintptr_t(bytes)) %
          16 ==
      0;
  if (wide) {
    auto* d = reinterpret_cast<uint4*>(dst);
    const auto* s = reinterpret_cast<const uint4*>(src);
    for (int64_t i = threadIdx.x; i < bytes / 16; i += blockDim.x) d[i] = s[i];
  } else {
    for (int64_t i = threadIdx.x; i < bytes; i += blockDim.x) dst[i] = src[i];
  }
}

// Block (i, l): image i's layer l <-> page device_page[i] of layer l.
template <bool kToStaging>
__global__ void move_pages(KvPageMoves m, std::byte* staging) {
  const int i = blockIdx.x, l = blockIdx.y;
  const int64_t lb = m.layer_page_bytes;
  std::byte* image = staging + (int64_t(i) * m.num_layers + l) * lb;
  std::byte* page = static_cast<std::byte*>(m.layers[l]) + int64_t(m.device_page[i]) * lb;
  if (kToStaging)
    copy_bytes(image, page, lb);
  else
    copy_bytes(page, image, lb);
}

template <bool kToStaging>
void launch(const KvPageMoves& m, std::byte* staging, cudaStream_t stream) {
  if (m.num_pages == 0 || m.num_layers == 0) return;
  move_pages<kToStaging><<<dim3(m.num_pages, m.num_layers), 256, 0, stream>>>(m, staging);
  check_launch("kv page moves");
}

}  // namespace

void kv_pages_from_staging(const KvPageMoves& moves, const void* staging, cudaStream_t stream) {
  launch<false>(moves, static_cast<std::byte*>(const_cast<void*>(staging)), stream);
}

void kv_pages_to_staging(const KvPageMoves& moves, void* staging, cudaStream_t stream) {
  launch<true>(moves, static_cast<std::byte*>(staging), stream);
}

}  // namespace nc::cuda

// The host tier's page moves on the device (kv_copy.cu), beside kernels.h in a header of their
// own so that adding them rebuilt none of the FlashInfer translation units. A host page image is
// all layers of one KV page, layer after layer ([layer][layer_page_bytes]), as the host tier
// stores it; the staging buffer holds `num_pages` such images back to back. Work is enqueued on
// `stream`; a failed launch throws std::runtime_error.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace nc::cuda {

inline constexpr int kKvMoveMaxLayers = 256;
inline constexpr int kKvMoveMaxPages = 64;

// One batch of page moves, passed by value as the kernel's parameter (no upload, graph-free).
struct KvPageMoves {
  void* layers[kKvMoveMaxLayers] = {};        // each layer's page array [pages, ...]
  int32_t device_page[kKvMoveMaxPages] = {};  // image i <-> page device_page[i] of every layer
  int32_t num_layers = 0;
  int32_t num_pages = 0;
  int64_t layer_page_bytes = 0;  // one layer's page
};

// Image i of `staging` into page device_page[i] of every layer.
void kv_pages_from_staging(const KvPageMoves& moves, const void* staging, cudaStream_t stream);
// Page device_page[i] of every layer into image i of `staging`.
void kv_pages_to_staging(const KvPageMoves& moves, void* staging, cudaStream_t stream);

}  // namespace nc::cuda

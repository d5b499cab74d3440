// Argument rules that several backends share, checked the same way everywhere (nc::Error naming
// the bad shape). Only shapes: each backend adds its own device, dtype and layout checks.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"

namespace nc {

// The widths of the q and k rows of Backend::qkv_split_norm_rope.
struct QkvWidths {
  int64_t q = 0;
  int64_t k = 0;
};

// Backend::qkv_split_norm_rope's shapes: cos_sin [max_pos, D]; q [T, Hq*D]; k, v [T, Hk*D];
// qkv [T, (Hq + 2 Hk) * D]; q_norm, k_norm [D] where defined (T: the number of positions).
QkvWidths check_qkv_split_shapes(const Tensor& qkv, const Tensor& q_norm, const Tensor& k_norm,
                                 const Tensor& positions, const Tensor& cos_sin, int head_dim,
                                 const Tensor& q, const Tensor& k, const Tensor& v);

// Backend::copy_kv_pages' geometry: the layers' common page count and one layer's page bytes.
struct KvCopyGeometry {
  int64_t num_layers = 0;
  int64_t num_pages = 0;
  int64_t layer_page_bytes = 0;
};

// Backend::copy_kv_pages' arguments (non-empty copies): every layer contiguous, of one shape, and
// every copy's device and host page in range (the host buffer holds whole pages of all layers).
KvCopyGeometry check_kv_page_copies(const std::vector<Tensor>& layers,
                                    std::span<const KVPageCopy> copies, const HostBuffer& host);

// Backend::apply_token_bitmask's arguments: logits f32 [R, V], bitmask i32 [R, ceil(V / 32)].
void check_token_bitmask(const Tensor& logits, const Tensor& bitmask);

}  // namespace nc

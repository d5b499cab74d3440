// The CPU backend's Backend::shift_key_positions (the streaming window's re-rotation of cached
// keys; contract in backend/backend.h): float32 pages, NHD or HND, threaded over the shifts.
#pragma once
#include "core/tensor.h"
#include "kv/paged_kv.h"

namespace nc {

// As Backend::shift_key_positions; also checks every page id and position (the shifts are on
// the host here).
void cpu_shift_key_positions(Tensor kv_pages, const KVCacheShape& kv, const Tensor& shifts,
                             const Tensor& inv_freq);

}  // namespace nc

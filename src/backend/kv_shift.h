// The parts of Backend::shift_key_positions (the streaming window's re-rotation of cached keys;
// the contract is in backend/backend.h) that every backend shares: the argument checks and the
// rotation angle of one frequency.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "kv/paged_kv.h"

namespace nc {

// shift_key_positions' arguments, nc::Error naming the bad one: kv_pages the layer's page
// tensor of kv's geometry ([num_pages, 2, page_size, Hk, D] NHD or [num_pages, 2, Hk, page_size,
// D] HND, not latent, not fp8); shifts i32 [P, 3] (P >= 0); inv_freq f32 [D / 2]. Shapes and
// dtypes only: page ids and positions are checked where the host sees them.
void check_shift_key_positions(const Tensor& kv_pages, const KVCacheShape& kv, const Tensor& shifts,
                               const Tensor& inv_freq);

// The angle by which a key at position `from` is rotated back to sit at position `to`, for one
// inverse frequency: the difference of the two float32 angles the rope table is made of
// (model/rope.h: float(p) * inv_freq), taken in double (exact: both are floats).
inline double key_shift_angle(int32_t from, int32_t to, float inv_freq) {
  const float a_from = float(from) * inv_freq, a_to = float(to) * inv_freq;
  return double(a_from) - double(a_to);
}

}  // namespace nc

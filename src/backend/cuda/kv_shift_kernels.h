// Backend::shift_key_positions on the device (kv_shift.cu; the contract is in backend/backend.h),
// in a header of its own beside kernels.h so that adding it rebuilt none of the FlashInfer
// translation units. Work is enqueued on `stream`; a failed launch throws std::runtime_error.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace nc::cuda {

// One layer's bf16 pages: [num_pages, 2, page_size, heads, head_dim] (NHD) or [num_pages, 2,
// heads, page_size, head_dim] (HND); the K plane is the first half of a page.
struct KeyShiftPages {
  void* pages = nullptr;
  int64_t page_elems = 0;  // K and V of one page
  int32_t page_size = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  bool hnd = false;
};

// shifts: i32 [num_shifts, 3] rows (page, from, to) on the device; inv_freq: f32 [head_dim / 2]
// on the device. Every K head vector of every slot of each listed page rotated back by the
// angles fl(float(from + s) * inv) - fl(float(to + s) * inv), in double.
void shift_key_positions_bf16(const KeyShiftPages& p, const int32_t* shifts, int num_shifts,
                              const float* inv_freq, cudaStream_t stream);

}  // namespace nc::cuda

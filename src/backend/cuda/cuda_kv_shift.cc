// CUDA shift_key_positions (backend/cuda/cuda_kv_shift.h).
#include "backend/cuda/cuda_kv_shift.h"

#include "backend/cuda/kv_shift_kernels.h"
#include "backend/kv_shift.h"

namespace nc::cuda_host {

void cuda_shift_key_positions(const Context& ctx, Tensor kv_pages, const KVCacheShape& kv,
                              const Tensor& shifts, const Tensor& inv_freq) {
  check_shift_key_positions(kv_pages, kv, shifts, inv_freq);
  expect_bf16(kv_pages, "shift_key_positions pages");
  expect_i32(shifts, "shift_key_positions shifts");
  expect_cuda(inv_freq, "shift_key_positions inv_freq");
  inv_freq.expect_contiguous("shift_key_positions inv_freq");
  const cuda::KeyShiftPages p{kv_pages.data(), kv.elems_per_page(), kv.page_size,
                              kv.num_kv_heads, kv.head_dim,         kv.layout == KVLayout::HND};
  k_call([&] {
    cuda::shift_key_positions_bf16(p, shifts.ptr<int32_t>(), int(shifts.dim(0)),
                                   inv_freq.ptr<float>(), ctx.stream);
  });
}

}  // namespace nc::cuda_host

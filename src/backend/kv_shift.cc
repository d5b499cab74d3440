// Shared argument checks of Backend::shift_key_positions (backend/kv_shift.h).
#include "backend/kv_shift.h"

#include "core/error.h"

namespace nc {

void check_shift_key_positions(const Tensor& kv_pages, const KVCacheShape& kv, const Tensor& shifts,
                               const Tensor& inv_freq) {
  const char* what = "shift_key_positions";
  NC_CHECK(!kv.latent, "{}: MLA's latent pages hold no rotate-half keys", what);
  NC_CHECK(!kv.fp8, "{}: fp8 pages are not supported (each shift would round the keys to e4m3)",
           what);
  NC_CHECK(kv.head_dim > 0 && kv.head_dim % 2 == 0, "{}: head_dim {} is not even", what,
           kv.head_dim);
  const Shape want = kv.layout == KVLayout::NHD
                         ? Shape{kv.num_pages, 2, kv.page_size, kv.num_kv_heads, kv.head_dim}
                         : Shape{kv.num_pages, 2, kv.num_kv_heads, kv.page_size, kv.head_dim};
  kv_pages.expect_shape(want, "shift_key_positions pages");
  kv_pages.expect_contiguous("shift_key_positions pages");
  shifts.expect_dtype(DType::I32, "shift_key_positions shifts");
  NC_CHECK(shifts.ndim() == 2 && shifts.dim(1) == 3,
           "{}: shifts {} are not rows of (page, from, to)", what, shape_str(shifts.shape()));
  inv_freq.expect_dtype(DType::F32, "shift_key_positions inv_freq");
  inv_freq.expect_shape({kv.head_dim / 2}, "shift_key_positions inv_freq");
}

}  // namespace nc

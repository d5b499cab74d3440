// Sparse decode attention on the CPU (contract: cpu_sparse.h).
#include "backend/cpu/cpu_sparse.h"

#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "core/fp8.h"
#include "kv/page_bounds.h"

namespace nc {

namespace {

// A PageBounds view of a bounds tensor shaped for kv, or an error naming the mismatch.
PageBounds bounds_view(const Tensor& bounds, const KVCacheShape& kv, const char* what) {
  bounds.expect_dtype(DType::F32, what);
  bounds.expect_device(Device::CPU, what);
  bounds.expect_contiguous(what);
  bounds.expect_shape({kv.num_pages, 2, kv.num_kv_heads, kv.head_dim}, what);
  return PageBounds::view(bounds.ptr<float>(), kv.num_pages, kv.num_kv_heads, kv.head_dim);
}

}  // namespace

void cpu_update_page_bounds(const Tensor& kv_pages, const KVCacheShape& kv,
                            const Tensor& page_slots, Tensor bounds) {
  NC_CHECK(!kv.latent, "update_page_bounds: an MLA (latent) cache has no per-head keys");
  PageBounds b = bounds_view(bounds, kv, "update_page_bounds bounds");
  page_slots.expect_dtype(DType::I32, "update_page_bounds page_slots");
  NC_CHECK(page_slots.ndim() == 2 && page_slots.dim(1) == 2,
           "update_page_bounds: page_slots of shape {} (needs [P, 2])",
           shape_str(page_slots.shape()));
  kv_pages.expect_dtype(kv.fp8 ? DType::F8E4M3 : DType::F32, "update_page_bounds kv pages");
  NC_CHECK(kv_pages.numel() == int64_t(kv.num_pages) * kv.elems_per_page(),
           "update_page_bounds: kv pages of shape {} for {} pages of {} values",
           shape_str(kv_pages.shape()), kv.num_pages, kv.elems_per_page());
  const int32_t* ps = page_slots.ptr<int32_t>();
  std::vector<float> decoded;
  for (int64_t i = 0; i < page_slots.dim(0); ++i) {
    const int page = ps[2 * i], slots = ps[2 * i + 1];
    NC_CHECK(page >= 0 && page < kv.num_pages, "update_page_bounds: page {} outside [0, {})", page,
             kv.num_pages);
    NC_CHECK(slots >= 1 && slots <= kv.page_size,
             "update_page_bounds: page {} has {} valid slots (needs 1..{})", page, slots,
             kv.page_size);
    const int64_t off = int64_t(page) * kv.elems_per_page();
    if (!kv.fp8) {
      b.rebuild_from(page, kv_pages.ptr<float>() + off, kv, slots);
      continue;
    }
    // The K half decoded and scaled: the same element offsets as the codes'.
    const int64_t half = kv.elems_per_page() / 2;
    decoded.resize(size_t(half));
    dequantize_e4m3(static_cast<const uint8_t*>(kv_pages.data()) + off, half, decoded.data());
    for (float& x : decoded) x *= kv.k_scale;
    b.rebuild_from(page, decoded.data(), kv, slots);
  }
}

AttentionStep cpu_sparse_step(const AttentionStep& step, const AttentionShape& shape,
                              const PageSelection& sel, const float* q, const Tensor& bounds) {
  const PageBounds b = bounds_view(bounds, shape.kv, "sparse_attention bounds");
  const auto scores = decode_page_scores(step, b, q, shape.num_qo_heads);
  return select_pages(step, scores, sel, shape.kv.page_size, shape.window_left);
}

}  // namespace nc

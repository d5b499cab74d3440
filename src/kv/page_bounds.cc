// PageBounds (contract: page_bounds.h).
#include "kv/page_bounds.h"

#include <algorithm>
#include <cstddef>
#include <limits>

#include "core/error.h"

namespace nc {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

}  // namespace

PageBounds::PageBounds(int num_pages, int num_kv_heads, int head_dim)
    : num_pages_(num_pages), num_kv_heads_(num_kv_heads), head_dim_(head_dim) {
  NC_CHECK(num_pages >= 1 && num_kv_heads >= 1 && head_dim >= 1,
           "PageBounds: pages {}, kv heads {}, head dim {} (each needs >= 1)", num_pages,
           num_kv_heads, head_dim);
  own_.resize(size_t(num_pages) * 2 * size_t(num_kv_heads) * size_t(head_dim));
  for (int p = 0; p < num_pages; ++p) reset(p);
}

PageBounds PageBounds::view(float* data, int num_pages, int num_kv_heads, int head_dim) {
  NC_CHECK(data != nullptr && num_pages >= 1 && num_kv_heads >= 1 && head_dim >= 1,
           "PageBounds::view: pages {}, kv heads {}, head dim {} (each needs >= 1), data {}",
           num_pages, num_kv_heads, head_dim, static_cast<const void*>(data));
  PageBounds b;
  b.num_pages_ = num_pages;
  b.num_kv_heads_ = num_kv_heads;
  b.head_dim_ = head_dim;
  b.view_ = data;
  return b;
}

int64_t PageBounds::offset(int page) const {
  NC_CHECK(page >= 0 && page < num_pages_, "PageBounds: page {} outside [0, {})", page, num_pages_);
  return int64_t(page) * 2 * num_kv_heads_ * head_dim_;
}

void PageBounds::reset(int page) {
  const int64_t n = int64_t(num_kv_heads_) * head_dim_;
  std::fill_n(lo(page), n, kInf);
  std::fill_n(hi(page), n, -kInf);
}

void PageBounds::fold(int page, const float* k) {
  const int64_t n = int64_t(num_kv_heads_) * head_dim_;
  float* l = lo(page);
  float* h = hi(page);
  for (int64_t i = 0; i < n; ++i) {
    l[i] = std::min(l[i], k[i]);
    h[i] = std::max(h[i], k[i]);
  }
}

void PageBounds::append(const PagedKVBatch& batch, const KVCacheShape& kv, const float* k) {
  NC_CHECK(kv.num_kv_heads == num_kv_heads_ && kv.head_dim == head_dim_,
           "PageBounds::append: cache has {} kv heads x {} dims, the store {} x {}",
           kv.num_kv_heads, kv.head_dim, num_kv_heads_, head_dim_);
  const int64_t row = int64_t(num_kv_heads_) * head_dim_;
  for (int b = 0; b < batch.batch_size(); ++b) {
    const int kv_len = batch.kv_len(b, kv.page_size), q_len = batch.q_len(b);
    for (int i = 0; i < q_len; ++i) {
      const int pos = kv_len - q_len + i;  // the slot cpu_append_kv writes this row into
      const int page = batch.kv_indices[size_t(batch.kv_indptr[b] + pos / kv.page_size)];
      if (pos % kv.page_size == 0) reset(page);
      fold(page, k + (int64_t(batch.qo_indptr[b]) + i) * row);
    }
  }
}

void PageBounds::rebuild(int page, const float* pages, const KVCacheShape& kv, int valid_slots) {
  rebuild_from(page, pages + int64_t(page) * kv.elems_per_page(), kv, valid_slots);
}

void PageBounds::rebuild_from(int page, const float* base, const KVCacheShape& kv,
                              int valid_slots) {
  NC_CHECK(kv.num_kv_heads == num_kv_heads_ && kv.head_dim == head_dim_,
           "PageBounds::rebuild: cache has {} kv heads x {} dims, the store {} x {}",
           kv.num_kv_heads, kv.head_dim, num_kv_heads_, head_dim_);
  NC_CHECK(valid_slots >= 0 && valid_slots <= kv.page_size,
           "PageBounds::rebuild: {} valid slots outside 0..{}", valid_slots, kv.page_size);
  reset(page);
  float* l = lo(page);
  float* u = hi(page);
  for (int s = 0; s < valid_slots; ++s)
    for (int h = 0; h < num_kv_heads_; ++h) {
      const float* k = base + kv.offset_in_page(0, s, h);
      for (int d = 0; d < head_dim_; ++d) {
        l[h * head_dim_ + d] = std::min(l[h * head_dim_ + d], k[d]);
        u[h * head_dim_ + d] = std::max(u[h * head_dim_ + d], k[d]);
      }
    }
}

float PageBounds::upper_bound(int page, int kv_head, const float* q, int group) const {
  NC_CHECK(kv_head >= 0 && kv_head < num_kv_heads_, "PageBounds: kv head {} outside [0, {})",
           kv_head, num_kv_heads_);
  const float* lo = min(page) + int64_t(kv_head) * head_dim_;
  const float* hi = max(page) + int64_t(kv_head) * head_dim_;
  if (lo[0] > hi[0]) return -kInf;  // empty: no key to bound (and inf * 0 would be NaN)
  float best = -kInf;
  for (int g = 0; g < group; ++g) {
    const float* qh = q + int64_t(g) * head_dim_;
    float sum = 0;
    for (int d = 0; d < head_dim_; ++d) sum += std::max(qh[d] * lo[d], qh[d] * hi[d]);
    best = std::max(best, sum);
  }
  return best;
}

}  // namespace nc

// PageBounds: per page and KV head, the element-wise minimum and maximum of the page's keys, for
// query-aware page selection (Quest, Tang et al., ICML 2024; kv/page_selection.h).
//
// One store per layer: float32 [num_pages, 2, num_kv_heads, head_dim], per page the minimum
// (index 0) then the maximum (index 1): the layout of Backend::update_page_bounds' tensor. A
// store owns its memory, or views memory it is given (a CPU bounds tensor) without owning it.
// A page's bounds cover exactly the slots written through this store since the page's slot 0
// was last written: append() folds the key rows a step appends (the slots cpu_append_kv writes,
// the last q_len slots of each entry) into their pages, and writing slot 0 first resets the page
// (a page is filled from slot 0 up, so a reused page, e.g. after preemption, starts clean).
// Full pages reached through a prefix-cache hit or a shared (cascade) level are never appended
// to and keep their bounds. A page whose contents change any other way (a copy, a swap-in)
// takes rebuild() from its contents. A page with no slot folded in has min = +inf, max = -inf.
//
// The score bound of a query head q against page p and KV head h:
//   ub(q) = sum_d max(q_d * min_d, q_d * max_d)  >=  q . k   for every key k folded into (p, h),
// since each term bounds q_d * k_d for min_d <= k_d <= max_d. The sum runs in order d = 0..D-1,
// so in float it also bounds q . k summed in that order (rounding is monotone). For GQA the
// bound of a group of query heads sharing KV head h is the maximum over the group. The bound
// leaves out sm_scale and a soft cap: both are increasing maps, so rankings do not change.
#pragma once
#include <cstdint>
#include <vector>

#include "kv/paged_kv.h"

namespace nc {

class PageBounds {
 public:
  PageBounds() = default;
  // All pages empty (+inf / -inf). Throws nc::Error on a count < 1.
  PageBounds(int num_pages, int num_kv_heads, int head_dim);
  // A view of `data` (num_pages * 2 * num_kv_heads * head_dim floats, left as they are), which
  // must outlive the store.
  static PageBounds view(float* data, int num_pages, int num_kv_heads, int head_dim);

  int num_pages() const { return num_pages_; }
  int num_kv_heads() const { return num_kv_heads_; }
  int head_dim() const { return head_dim_; }

  // [num_kv_heads, head_dim] of page `page`.
  const float* min(int page) const { return data() + offset(page); }
  const float* max(int page) const { return min(page) + int64_t(num_kv_heads_) * head_dim_; }

  // Makes page `page` empty.
  void reset(int page);
  // Folds one key row [num_kv_heads * head_dim] into page `page`.
  void fold(int page, const float* k);
  // Folds the step's appended key rows k [T, num_kv_heads * head_dim] into their pages: the
  // last q_len slots of each entry of `batch` (the own level), as cpu_append_kv writes them;
  // a row landing in slot 0 resets its page first. Throws nc::Error when kv's heads or head dim
  // differ from the store's, or a page id is out of range.
  void append(const PagedKVBatch& batch, const KVCacheShape& kv, const float* k);
  // Recomputes page `page` from the first `valid_slots` K slots of its contents in `pages`
  // (the layer's page tensor, laid out as kv says, float32).
  void rebuild(int page, const float* pages, const KVCacheShape& kv, int valid_slots);
  // The same from the page's own contents at `page_data` (one page laid out as kv says).
  void rebuild_from(int page, const float* page_data, const KVCacheShape& kv, int valid_slots);

  // The score bound of q [group, head_dim] (the query heads of KV head `kv_head`, contiguous)
  // against page `page`: the maximum over the group's heads of ub(q_head). -inf on an empty page.
  float upper_bound(int page, int kv_head, const float* q, int group) const;

 private:
  int64_t offset(int page) const;  // of the page's minimum; its maximum follows
  float* data() { return view_ ? view_ : own_.data(); }
  const float* data() const { return view_ ? view_ : own_.data(); }
  float* lo(int page) { return data() + offset(page); }
  float* hi(int page) { return lo(page) + int64_t(num_kv_heads_) * head_dim_; }

  int num_pages_ = 0, num_kv_heads_ = 0, head_dim_ = 0;
  std::vector<float> own_;
  float* view_ = nullptr;  // set: a view (own_ empty)
};

}  // namespace nc

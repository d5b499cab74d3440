// Per-KV-head page selection (Quest's own granularity; kv/page_selection.h is the per-request
// rule it refines, docs/sparse.md).
//
// With the HND layout a page is [K: Hk, page_size, D][V: Hk, page_size, D], so the block of one
// KV head h of page p is contiguous: K at ((2 * p * Hk) + h) * page_size * D elements from the
// layer's base and V Hk blocks further. The page tensor is thus also a pool of "head pages" of
// [page_size, D] with one KV head, head page id head_page_id(p, h, Hk) = 2 * p * Hk + h, K at
// id * page_size * D and V at (id + Hk) * page_size * D (a page stride of page_size * D and a V
// offset of Hk blocks: FlashInfer's paged_kv_t takes both). A decode row of (request r, KV head
// h) is then a request of g = Hq / Hk query heads (heads h*g .. h*g+g-1 of r's query row, which
// are contiguous: the queries [B, Hq, D] are [B*Hk, g, D]) over head pages of its own choosing.
//
// decode_head_page_scores: per own-level decode entry (one query row), per KV head h, per page,
// the bound of h's group of query heads alone (PageBounds::upper_bound(page, h, ...)); prefill
// entries get none. select_head_pages: per entry read sparsely (entry_is_sparse) and per KV
// head, kept_page_indices over that head's scores with the entry's budget: sinks, window and last
// page kept by every head, the other pages per head by decreasing bound (ties: the earlier page).
// Every head of an entry keeps the same number of pages (selected_page_count: the count never
// depends on the scores), only which ones differs. Entries not read sparsely keep no list: they
// are attended densely with every head, as in the per-request rule.
//
// Errors as select_pages (kv/page_selection.h), plus a layout other than HND (nc::Error naming it)
// and head scores whose shape differs from the entries' pages and the KV heads.
#pragma once
#include <vector>

#include "kv/page_bounds.h"
#include "kv/page_selection.h"

namespace nc {

// The head page of KV head h of page p (HND; contract above).
inline int32_t head_page_id(int32_t page, int h, int num_kv_heads) {
  return 2 * page * num_kv_heads + h;
}

// Throws an nc::Error naming the layout unless kv is an HND cache of per-head keys (not latent).
void check_per_head_layout(const KVCacheShape& kv);

// kept[b][h]: the kept page ids (original ids, in sequence order) of KV head h of own-level entry
// b; kept[b] is empty for an entry read densely.
struct HeadSelection {
  std::vector<std::vector<std::vector<int32_t>>> kept;
  std::vector<int32_t> last_page_len;  // of each own-level entry (that of the dense step)

  bool sparse(int b) const { return !kept[size_t(b)].empty(); }
  // Tokens head lists of entry b hold (every head the same count).
  int kv_len(int b, int page_size) const {
    return int(kept[size_t(b)][0].size() - 1) * page_size + last_page_len[size_t(b)];
  }
};

// scores[b][h][i]: the bound of page i of own-level entry b for KV head h's query heads; empty
// for entries of more than one query row. q [num_tokens, Hq * D] as decode_page_scores takes it.
std::vector<std::vector<std::vector<float>>> decode_head_page_scores(const AttentionStep& step,
                                                                     const PageBounds& bounds,
                                                                     const float* q,
                                                                     int num_qo_heads);

HeadSelection select_head_pages(const AttentionStep& step,
                                const std::vector<std::vector<std::vector<float>>>& scores,
                                const PageSelection& sel, const KVCacheShape& kv, int window_left);

// The head-page batch of a selection: one entry per (sparse own-level entry b, KV head h), in
// that order (b ascending, then h), q_len 1, causal, over head_page_id(p, h, Hk) of its kept pages.
PagedKVBatch head_page_batch(const HeadSelection& sel, int num_kv_heads, int page_size);

}  // namespace nc

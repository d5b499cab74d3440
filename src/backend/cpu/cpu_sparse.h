// Sparse decode attention on the CPU (Quest; backend.h's sparse section): the reference of
// Backend::update_page_bounds and of the selection sparse_attention makes, over PageBounds views
// of the bounds tensor (kv/page_bounds.h) and select_pages (kv/page_selection.h).
//
// cpu_update_page_bounds recomputes each listed page's bounds from its first `valid slots` K
// rows: float32 pages as they are; fp8 pages decoded and multiplied by k_scale (the keys the
// attention sees), so bounds are always of true key values. cpu_sparse_step is the step a sparse
// plan attends with for queries q: each own-level entry the selection reads sparsely
// (entry_is_sparse) keeps the pages select_pages picks from decode_page_scores over `bounds`;
// every other entry and every shared level as they are.
//
// cpu_attend_head_sparse is the per-KV-head variant (sel.per_head; kv/head_selection.h): each
// (entry, KV head) of an entry read sparsely attends its g query heads over the pages
// select_head_pages keeps for that head, copied into a scratch pool of one-head pages (the
// reference: attention over exactly those pages); dense entries and shared levels as attention()
// reads them, merged by log-sum-exp as cpu_attend_levels merges.
#pragma once
#include "core/tensor.h"
#include "kv/page_selection.h"
#include "kv/paged_kv.h"

namespace nc {

struct AttentionShape;

// bounds: f32 [num_pages, 2, Hk, D]; page_slots: i32 [P, 2] of (page id, valid slots in
// 1..page_size). nc::Error naming the bad value on shapes, dtypes, ids or slot counts.
void cpu_update_page_bounds(const Tensor& kv_pages, const KVCacheShape& kv,
                            const Tensor& page_slots, Tensor bounds);

// q: float32 [num_tokens, Hq * D]. Throws as select_pages does (budgets below sinks + window, a
// windowed layer).
AttentionStep cpu_sparse_step(const AttentionStep& step, const AttentionShape& shape,
                              const PageSelection& sel, const float* q, const Tensor& bounds);

// out [T, Hq * D]; pages: the layer's page tensor's data (float32 or e4m3 codes) with the step's
// K/V already appended. Throws as select_head_pages does (an NHD cache, budgets, a windowed
// layer).
void cpu_attend_head_sparse(const AttentionStep& step, const AttentionShape& shape,
                            const PageSelection& sel, const float* q, const void* pages,
                            const Tensor& bounds, float* out);

}  // namespace nc

// select_pages: query-aware page selection for decode (Quest, Tang et al., ICML 2024), as a
// step transform of the same kind as window_view (kv/sliding_window.h).
//
// Per decode request (an entry of the step's own, last, level with one query row), given one
// score bound per page of its entry (kv/page_bounds.h; decode_page_scores computes them), the
// request keeps:
//   - its first `sink_pages` pages (attention sinks),
//   - the pages holding its last `window_tokens` tokens, and always its last page (the slot the
//     step's K/V is appended into stays where it was),
//   - then the other pages by decreasing bound (ties: the earlier page) while the kept tokens
//     stay within `token_budget`; a page counts its valid slots (page_size, or the entry's last
//     page length for the last page).
// Kept pages keep their sequence order; the entry's kv_len becomes the kept token count and its
// last page length is unchanged. An entry of at most token_budget tokens is left as it is, so
// with a budget at least every request's context the step is returned unchanged. The sinks and
// the window are kept even when, by page rounding, they hold more than the budget (at most
// sink_pages * page_size + window_tokens + page_size tokens).
//
// The one query row of a decode entry is its last position and sees every key of its entry, so
// the causal mask stays exact over a non-contiguous page list. A sliding-window mask (positions
// counted back from the entry's end) would not: a layer with window_left >= 0 is refused.
//
// Shared (cascade) levels stay dense and are passed through unchanged. A shared entry is read
// once for all its sharers, while a selection is per request (its own query): selecting inside
// a shared level would need a page list per sharer, i.e. undo the sharing that makes the cascade
// cheap. Shared prefixes are also where the sinks (system prompt, first tokens) lie. The budget
// thus bounds each request's own-level tokens; its shared tokens come on top.
//
// Errors (nc::Error, naming the value): a budget below sink_pages * page_size + window_tokens,
// negative sinks or window, an own-level entry with more or fewer than one query row (selection
// is for decode rows: a prefill row would silently go dense or lose keys), scores whose count
// differs from the entry's pages, a windowed layer, a malformed step.
#pragma once
#include <vector>

#include "kv/page_bounds.h"
#include "kv/paged_kv.h"

namespace nc {

struct PageSelection {
  int token_budget = 0;   // kept tokens per request's own entry (>= sinks + window)
  int sink_pages = 1;     // first pages always kept
  int window_tokens = 0;  // most recent tokens always kept
};

// scores[b]: one bound per page of own-level entry b, in the entry's page order.
AttentionStep select_pages(const AttentionStep& step, const std::vector<std::vector<float>>& scores,
                           const PageSelection& sel, int page_size, int window_left);

// The bounds of every page of each own-level entry for its decode row: q [num_tokens, Hq * D]
// (the step's queries, row-major by head), Hq a multiple of the store's KV heads; a page's score
// is the maximum over all KV heads of PageBounds::upper_bound (one page list serves all heads).
std::vector<std::vector<float>> decode_page_scores(const AttentionStep& step,
                                                   const PageBounds& bounds, const float* q,
                                                   int num_qo_heads);

}  // namespace nc

// select_pages: query-aware page selection for decode (Quest, Tang et al., ICML 2024), as a
// step transform of the same kind as window_view (kv/sliding_window.h).
//
// Per decode request (an entry of the step's own, last, level with one query row) whose budget
// (PageSelection::budget) is > 0, given one score bound per page of its entry
// (kv/page_bounds.h; decode_page_scores computes them), the request keeps:
//   - its first `sink_pages` pages (attention sinks),
//   - the pages holding its last `window_tokens` tokens, and always its last page (the slot the
//     step's K/V is appended into stays where it was),
//   - then the other pages by decreasing bound (ties: the earlier page) while the kept tokens
//     stay within `token_budget`; a page counts its valid slots (page_size, or the entry's last
//     page length for the last page).
// Kept pages keep their sequence order; the entry's kv_len becomes the kept token count and its
// last page length is unchanged. An entry of at most its budget tokens is left as it is, so
// with a budget at least every request's context the step is returned unchanged. Entries with
// more than one query row (prefill chunks of a mixed step) and entries of budget 0 are dense:
// left as they are (their scores are not read and may be empty). How many pages an entry keeps
// depends on its page count, last page length, budget, sinks and window only (every candidate
// page is full, so the greedy fill stops at the same count whatever the scores):
// selected_page_count. The sinks and
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
// Errors (nc::Error, naming the value): a budget (> 0) below sink_pages * page_size +
// window_tokens, negative sinks or window, a per-entry budget list whose size differs from the
// own level's entries, scores whose count differs from a selected entry's pages, a windowed
// layer, a malformed step.
#pragma once
#include <vector>

#include "kv/page_bounds.h"
#include "kv/paged_kv.h"

namespace nc {

struct PageSelection {
  int token_budget = 0;   // kept tokens per request's own entry (0: dense; else >= sinks + window)
  int sink_pages = 1;     // first pages always kept
  int window_tokens = 0;  // most recent tokens always kept
  // One budget per own-level entry, in place of token_budget (0: that entry dense); empty:
  // token_budget for every entry. Requests choose their budget (SamplingParams::sparse_budget).
  std::vector<int32_t> entry_budgets = {};
  // Per KV head (Quest's granularity; kv/head_selection.h): each (entry, KV head) keeps its own
  // pages by its own bound, the same rule and budget per head. Needs the HND layout (a page's
  // block of one KV head is contiguous there); false: one page list per request for all heads.
  bool per_head = false;

  int budget(int entry) const {
    return entry_budgets.empty() ? token_budget : entry_budgets[size_t(entry)];
  }
};

// Whether own-level entry b of `step` is read sparsely under `sel`: one query row, a budget > 0
// and more tokens than it.
bool entry_is_sparse(const PagedKVBatch& own, int b, const PageSelection& sel, int page_size);

// Pages a decode entry of num_pages pages (its last holding last_len tokens) keeps under budget
// (0: dense, all of them). What select_pages keeps, computed without scores.
int selected_page_count(int num_pages, int last_len, int page_size, int budget,
                        const PageSelection& sel);

// The kept page indices (into the entry, ascending) of one decode entry of n pages whose last
// holds last_len tokens, under budget, by score (one per page): the rule above.
std::vector<int> kept_page_indices(const std::vector<float>& score, int n, int last_len,
                                   int page_size, int budget, const PageSelection& sel);

// The checks select_pages makes before it reads scores (the errors above but the scores').
void check_page_selection(const AttentionStep& step, const PageSelection& sel, int page_size,
                          int window_left);

// scores[b]: one bound per page of own-level entry b, in the entry's page order (may be empty
// for an entry that is not read sparsely).
AttentionStep select_pages(const AttentionStep& step, const std::vector<std::vector<float>>& scores,
                           const PageSelection& sel, int page_size, int window_left);

// The bounds of every page of each own-level decode entry (one query row) for its row:
// q [num_tokens, Hq * D] (the step's queries, row-major by head), Hq a multiple of the store's KV
// heads; a page's score is the maximum over all KV heads of PageBounds::upper_bound (one page
// list serves all heads). Entries of several rows (prefill chunks) get no scores.
std::vector<std::vector<float>> decode_page_scores(const AttentionStep& step,
                                                   const PageBounds& bounds, const float* q,
                                                   int num_qo_heads);

}  // namespace nc

// window_view (contract: sliding_window.h).
//
// Requests are the entries of the own (last) level. A shared entry belongs to the requests whose
// rows it spans; a request's sequence is its non-empty shared entries in level order, then its
// own entry, so the start position of each of its entries is the sum of the lengths before it.
#include "kv/sliding_window.h"

#include <climits>
#include <cstddef>
#include <span>
#include <vector>

#include "core/error.h"

namespace nc {
namespace {

// One request of the step: where its rows' windows start and what it folds into its own entry.
struct Request {
  int shared_tokens = 0;   // tokens of its shared entries (its own entry starts here)
  int own_len = 0;         // tokens of its own entry
  int win_first = 0;       // window start of its first row (every window starts at or after)
  int win_last = 0;        // window start of its last row (every window starts at or before)
  std::vector<int> start;  // per shared level: start position of its entry there, -1: none
  bool folded = false;
  int fold_start = 0;  // position of its first folded token
  std::vector<int32_t> fold_pages;
};

std::span<const int32_t> entry_pages(const PagedKVBatch& batch, int e) {
  return std::span<const int32_t>(batch.kv_indices)
      .subspan(size_t(batch.kv_indptr[e]), size_t(batch.num_pages(e)));
}

// request_at[row] = the request whose rows start at `row`, -1 when none does; the step's end
// row maps to the number of requests.
std::vector<int> request_starts(const PagedKVBatch& own, int num_tokens) {
  std::vector<int> at(size_t(num_tokens) + 1, -1);
  for (int r = 0; r < own.batch_size(); ++r) {
    NC_CHECK(own.q_len(r) >= 1, "window_view: own entry {} has {} query rows (needs >= 1)", r,
             own.q_len(r));
    at[size_t(own.qo_indptr[r])] = r;
  }
  at[size_t(num_tokens)] = own.batch_size();
  return at;
}

void check_levels(const AttentionStep& step, int page_size) {
  NC_CHECK(page_size >= 1, "window_view: page size {} < 1", page_size);
  NC_CHECK(!step.levels.empty(), "window_view: the step has no levels");
  for (size_t l = 0; l < step.levels.size(); ++l) {
    try {
      step.levels[l].validate(step.num_tokens, page_size, INT_MAX);
    } catch (const Error& e) {
      fail("window_view: level {}: {}", l, e.what());
    }
  }
  NC_CHECK(step.levels.back().causal, "window_view: the own (last) level is not causal");
}

// The requests [first, last) whose rows shared entry e of level l spans (its pages whole).
std::pair<int, int> sharers(const AttentionStep& step, const std::vector<int>& request_at, int l,
                            int e, int page_size) {
  const PagedKVBatch& level = step.levels[size_t(l)];
  const int r0 = level.qo_indptr[e], r1 = level.qo_indptr[e + 1];
  const int first = request_at[size_t(r0)], last = request_at[size_t(r1)];
  NC_CHECK(first >= 0 && last >= 0 && first < last,
           "window_view: shared entry {} of level {} spans rows {}..{}, not whole requests", e, l,
           r0, r1);
  NC_CHECK(level.kv_last_page_len[e] == page_size,
           "window_view: shared entry {} of level {} ends in a partial page ({} of {} slots)", e, l,
           level.kv_last_page_len[e], page_size);
  return {first, last};
}

// Lays out every request's sequence: its shared entries' start positions and its windows.
std::vector<Request> layout(const AttentionStep& step, const std::vector<int>& request_at,
                            int window_left, int page_size) {
  const PagedKVBatch& own = step.levels.back();
  const int shared_levels = int(step.levels.size()) - 1;
  std::vector<Request> reqs(size_t(own.batch_size()));
  for (Request& r : reqs) r.start.assign(size_t(shared_levels), -1);
  for (int l = 0; l < shared_levels; ++l) {
    const PagedKVBatch& level = step.levels[size_t(l)];
    for (int e = 0; e < level.batch_size(); ++e) {
      if (level.num_pages(e) == 0) continue;
      const auto [first, last] = sharers(step, request_at, l, e, page_size);
      for (int r = first; r < last; ++r) {
        reqs[size_t(r)].start[size_t(l)] = reqs[size_t(r)].shared_tokens;
        reqs[size_t(r)].shared_tokens += level.kv_len(e, page_size);
      }
    }
  }
  for (int r = 0; r < own.batch_size(); ++r) {
    Request& q = reqs[size_t(r)];
    q.own_len = own.kv_len(r, page_size);
    const int first_pos = q.shared_tokens + q.own_len - own.q_len(r);
    q.win_first = first_pos - window_left;
    q.win_last = first_pos + own.q_len(r) - 1 - window_left;
  }
  return reqs;
}

// Decides shared entry e of level l: kept (true) or, per sharer, dropped or folded.
bool decide_entry(const AttentionStep& step, const std::vector<int>& request_at, int l, int e,
                  int page_size, std::vector<Request>& reqs) {
  const PagedKVBatch& level = step.levels[size_t(l)];
  const auto [first, last] = sharers(step, request_at, l, e, page_size);
  bool keep = true;
  for (int r = first; r < last && keep; ++r)
    keep = !reqs[size_t(r)].folded && reqs[size_t(r)].start[size_t(l)] >= reqs[size_t(r)].win_last;
  if (keep) return true;
  const int len = level.kv_len(e, page_size);
  const std::span<const int32_t> pages = entry_pages(level, e);
  for (int r = first; r < last; ++r) {
    Request& q = reqs[size_t(r)];
    const int start = q.start[size_t(l)];
    if (!q.folded && start + len <= q.win_first) continue;  // wholly before every window
    if (!q.folded) q.fold_start = start;
    q.folded = true;
    q.fold_pages.insert(q.fold_pages.end(), pages.begin(), pages.end());
  }
  return false;
}

// Shared level l with only its kept entries' pages (the others empty over the same rows).
PagedKVBatch kept_level(const PagedKVBatch& level, const std::vector<char>& kept, int page_size) {
  PagedKVBatch out;
  out.causal = level.causal;
  for (int e = 0; e < level.batch_size(); ++e) {
    if (kept[size_t(e)])
      out.add_pages(level.q_len(e), entry_pages(level, e), level.kv_len(e, page_size), page_size);
    else
      out.add_pages(level.q_len(e), {}, 0, page_size);
  }
  return out;
}

// The own level: each request's folded pages then its own, less the leading pages wholly
// before its first row's window.
PagedKVBatch own_level(const PagedKVBatch& own, const std::vector<Request>& reqs, int page_size) {
  PagedKVBatch out;
  out.causal = own.causal;
  for (int r = 0; r < own.batch_size(); ++r) {
    const Request& q = reqs[size_t(r)];
    std::vector<int32_t> pages = q.fold_pages;
    const std::span<const int32_t> mine = entry_pages(own, r);
    pages.insert(pages.end(), mine.begin(), mine.end());
    const int start = q.folded ? q.fold_start : q.shared_tokens;
    const int len = q.shared_tokens - start + q.own_len;
    // Pages wholly before win_first; never the page of the first row (at win_first + window).
    const int cut = q.win_first > start ? (q.win_first - start) / page_size : 0;
    out.add_pages(own.q_len(r), std::span<const int32_t>(pages).subspan(size_t(cut)),
                  len - cut * page_size, page_size);
  }
  return out;
}

}  // namespace

AttentionStep window_view(const AttentionStep& step, int window_left, int page_size) {
  if (window_left < 0) return step;
  check_levels(step, page_size);
  const std::vector<int> request_at = request_starts(step.levels.back(), step.num_tokens);
  std::vector<Request> reqs = layout(step, request_at, window_left, page_size);
  AttentionStep out;
  out.num_tokens = step.num_tokens;
  // Levels in order: whether a sharer folded an earlier level decides the later ones.
  for (size_t l = 0; l + 1 < step.levels.size(); ++l) {
    const PagedKVBatch& level = step.levels[l];
    std::vector<char> kept(size_t(level.batch_size()), 0);
    bool any = false;
    for (int e = 0; e < level.batch_size(); ++e) {
      if (level.num_pages(e) == 0) continue;
      kept[size_t(e)] = decide_entry(step, request_at, int(l), e, page_size, reqs);
      any = any || kept[size_t(e)];
    }
    if (any) out.levels.push_back(kept_level(level, kept, page_size));
  }
  out.levels.push_back(own_level(step.levels.back(), reqs, page_size));
  return out;
}

}  // namespace nc

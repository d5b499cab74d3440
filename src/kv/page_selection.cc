// select_pages, decode_page_scores (contract: page_selection.h).
#include "kv/page_selection.h"

#include <algorithm>
#include <climits>
#include <cstddef>
#include <limits>
#include <numeric>
#include <span>

#include "core/error.h"

namespace nc {
namespace {

void check_budget(int budget, const PageSelection& sel, int page_size, const char* what) {
  const int64_t floor = int64_t(sel.sink_pages) * page_size + sel.window_tokens;
  NC_CHECK(budget >= 0, "select_pages: {} {} < 0", what, budget);
  NC_CHECK(budget == 0 || budget >= floor,
           "select_pages: {} {} below sinks + window ({} pages of {} + {} tokens = {})", what,
           budget, sel.sink_pages, page_size, sel.window_tokens, floor);
}

void check_config(const PageSelection& sel, int page_size, int window_left) {
  NC_CHECK(page_size >= 1, "select_pages: page size {} < 1", page_size);
  NC_CHECK(sel.sink_pages >= 0, "select_pages: sink pages {} < 0", sel.sink_pages);
  NC_CHECK(sel.window_tokens >= 0, "select_pages: window tokens {} < 0", sel.window_tokens);
  check_budget(sel.token_budget, sel, page_size, "token budget");
  for (int32_t b : sel.entry_budgets) check_budget(b, sel, page_size, "entry budget");
  NC_CHECK(window_left < 0,
           "select_pages: a sliding-window layer (window_left {}) cannot take a sparse page list "
           "(its mask counts positions back from the entry's end); use window_view there",
           window_left);
}

void check_step(const AttentionStep& step, int page_size) {
  NC_CHECK(!step.levels.empty(), "select_pages: the step has no levels");
  for (size_t l = 0; l < step.levels.size(); ++l) {
    try {
      step.levels[l].validate(step.num_tokens, page_size, INT_MAX);
    } catch (const Error& e) {
      fail("select_pages: level {}: {}", l, e.what());
    }
  }
  NC_CHECK(step.levels.back().causal, "select_pages: the own (last) level is not causal");
}

// The first page of an entry's window: the window's first token, kv_len - window_tokens, lies
// in page (kv_len - window) / ps (never past the last page).
int first_window_page(int n, int last_len, int page_size, const PageSelection& sel) {
  const int kv_len = (n - 1) * page_size + last_len;
  return std::min(std::max(0, kv_len - sel.window_tokens) / page_size, n - 1);
}

}  // namespace

std::vector<int> kept_page_indices(const std::vector<float>& score, int n, int last_len,
                                   int page_size, int budget, const PageSelection& sel) {
  auto tokens = [&](int i) { return i == n - 1 ? last_len : page_size; };
  std::vector<char> keep(size_t(n), 0);
  const int first_window = first_window_page(n, last_len, page_size, sel);
  for (int i = 0; i < n; ++i) keep[size_t(i)] = i < sel.sink_pages || i >= first_window;
  int used = 0;
  for (int i = 0; i < n; ++i) used += keep[size_t(i)] ? tokens(i) : 0;
  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return score[size_t(a)] > score[size_t(b)]; });
  for (int i : order) {
    if (keep[size_t(i)] || used + tokens(i) > budget) continue;
    keep[size_t(i)] = 1;
    used += tokens(i);
  }
  std::vector<int> kept;
  for (int i = 0; i < n; ++i)
    if (keep[size_t(i)]) kept.push_back(i);
  return kept;
}

bool entry_is_sparse(const PagedKVBatch& own, int b, const PageSelection& sel, int page_size) {
  const int budget = sel.budget(b);
  return own.q_len(b) == 1 && budget > 0 && own.kv_len(b, page_size) > budget;
}

int selected_page_count(int n, int last_len, int page_size, int budget, const PageSelection& sel) {
  const int kv_len = n == 0 ? 0 : (n - 1) * page_size + last_len;
  if (budget <= 0 || kv_len <= budget) return n;
  const int first_window = first_window_page(n, last_len, page_size, sel);
  const int sinks = std::min(sel.sink_pages, first_window);  // sink pages outside the window
  const int mandatory = sinks + (n - first_window);
  const int used = sinks * page_size + (n - 1 - first_window) * page_size + last_len;
  const int room = std::max(0, budget - used) / page_size;
  return mandatory + std::min(n - mandatory, room);
}

void check_page_selection(const AttentionStep& step, const PageSelection& sel, int page_size,
                          int window_left) {
  check_config(sel, page_size, window_left);
  check_step(step, page_size);
  const PagedKVBatch& own = step.levels.back();
  NC_CHECK(sel.entry_budgets.empty() || sel.entry_budgets.size() == size_t(own.batch_size()),
           "select_pages: {} entry budgets for {} own-level entries", sel.entry_budgets.size(),
           own.batch_size());
}

AttentionStep select_pages(const AttentionStep& step, const std::vector<std::vector<float>>& scores,
                           const PageSelection& sel, int page_size, int window_left) {
  check_page_selection(step, sel, page_size, window_left);
  const PagedKVBatch& own = step.levels.back();
  NC_CHECK(scores.size() == size_t(own.batch_size()),
           "select_pages: scores for {} entries, the own level has {}", scores.size(),
           own.batch_size());
  AttentionStep out = step;
  PagedKVBatch sparse;
  sparse.causal = own.causal;
  for (int b = 0; b < own.batch_size(); ++b) {
    const int n = own.num_pages(b), kv_len = own.kv_len(b, page_size);
    const std::span<const int32_t> pages =
        std::span<const int32_t>(own.kv_indices).subspan(size_t(own.kv_indptr[b]), size_t(n));
    if (!entry_is_sparse(own, b, sel, page_size)) {
      sparse.add_pages(own.q_len(b), pages, kv_len, page_size);
      continue;
    }
    NC_CHECK(scores[size_t(b)].size() == size_t(n),
             "select_pages: entry {} has {} pages but {} scores", b, n, scores[size_t(b)].size());
    const int last_len = own.kv_last_page_len[size_t(b)];
    std::vector<int32_t> kept;
    for (int i : kept_page_indices(scores[size_t(b)], n, last_len, page_size, sel.budget(b), sel))
      kept.push_back(pages[size_t(i)]);
    sparse.add_pages(1, kept, int(kept.size() - 1) * page_size + last_len, page_size);
  }
  out.levels.back() = std::move(sparse);
  return out;
}

std::vector<std::vector<float>> decode_page_scores(const AttentionStep& step,
                                                   const PageBounds& bounds, const float* q,
                                                   int num_qo_heads) {
  const int hk = bounds.num_kv_heads(), d = bounds.head_dim();
  NC_CHECK(num_qo_heads >= hk && num_qo_heads % hk == 0,
           "decode_page_scores: {} query heads not a multiple of {} kv heads", num_qo_heads, hk);
  NC_CHECK(!step.levels.empty(), "decode_page_scores: the step has no levels");
  const int group = num_qo_heads / hk;
  const PagedKVBatch& own = step.levels.back();
  std::vector<std::vector<float>> scores(size_t(own.batch_size()));
  for (int b = 0; b < own.batch_size(); ++b) {
    if (own.q_len(b) != 1) continue;  // a prefill chunk: read densely
    const float* row = q + int64_t(own.qo_indptr[b]) * num_qo_heads * d;
    for (int i = own.kv_indptr[b]; i < own.kv_indptr[b + 1]; ++i) {
      float best = -std::numeric_limits<float>::infinity();
      for (int h = 0; h < hk; ++h)
        best = std::max(best, bounds.upper_bound(own.kv_indices[size_t(i)], h,
                                                 row + int64_t(h) * group * d, group));
      scores[size_t(b)].push_back(best);
    }
  }
  return scores;
}

}  // namespace nc

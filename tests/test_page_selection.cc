// select_pages / decode_page_scores (kv/page_selection.h): a hand-built entry keeps its sinks,
// window and last page and then the highest bounds within the budget; random entries keep the
// same invariants (sinks, window, tokens within the budget or the mandatory pages, every dropped
// page bounded no higher than every optional kept one, no room left for another page); a budget
// at least the context returns the step unchanged and its attention bit for bit; CPU attention
// over the sparse step equals attention over a fresh pool holding exactly the selected pages
// (1e-5), with and without a dense shared (cascade) level merged in, and appends the step's K/V
// into the same slots as the dense step; the page whose key matches the query is the one picked;
// bad budgets and windowed layers are rejected; prefill rows pass through dense.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_attention.h"
#include "core/error.h"
#include "kv/page_selection.h"

namespace nc {
namespace {

AttentionStep one_level(const std::vector<std::vector<int32_t>>& pages,
                        const std::vector<int>& kv_lens, int ps) {
  AttentionStep s;
  s.levels.emplace_back();
  for (size_t b = 0; b < pages.size(); ++b) s.levels[0].add(1, pages[b], kv_lens[b], ps);
  s.num_tokens = int(pages.size());
  return s;
}

std::vector<int32_t> entry(const PagedKVBatch& b, int e) {
  return {b.kv_indices.begin() + b.kv_indptr[e], b.kv_indices.begin() + b.kv_indptr[e + 1]};
}

TEST(PageSelection, KeepsSinksWindowThenTopBoundsWithinBudget) {
  const int ps = 4;
  std::vector<int32_t> pages = {20, 21, 22, 23, 24, 25, 26, 27, 28, 29};
  const AttentionStep step = one_level({pages}, {38}, ps);  // last page holds 2 tokens
  const std::vector<std::vector<float>> scores = {{0, 5, 1, 9, 2, 7, 3, 0, -1, -2}};
  // Sink page 0, window 6 tokens (32..37: pages 8 and 9) = 10 tokens; 8 left: pages 3 and 5.
  AttentionStep got = select_pages(step, scores, {18, 1, 6}, ps, -1);
  EXPECT_EQ(entry(got.levels[0], 0), (std::vector<int32_t>{20, 23, 25, 28, 29}));
  EXPECT_EQ(got.levels[0].kv_len(0, ps), 18);
  EXPECT_EQ(got.levels[0].kv_last_page_len, std::vector<int32_t>{2});
  // One token less: page 5 no longer fits.
  got = select_pages(step, scores, {17, 1, 6}, ps, -1);
  EXPECT_EQ(entry(got.levels[0], 0), (std::vector<int32_t>{20, 23, 28, 29}));
  // No sinks, no window: the last page still stays (the append slot).
  got = select_pages(step, scores, {6, 0, 0}, ps, -1);
  EXPECT_EQ(entry(got.levels[0], 0), (std::vector<int32_t>{23, 29}));
}

TEST(PageSelection, RandomEntriesKeepInvariants) {
  std::mt19937 rng(11);
  for (int ps : {1, 3, 16})
    for (int trial = 0; trial < 200; ++trial) {
      const int kv_len = std::uniform_int_distribution<int>(1, 300)(rng);
      const int n = (kv_len + ps - 1) / ps;
      std::vector<int32_t> pages(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) pages[size_t(i)] = 1000 - i;  // ids unlike positions
      std::vector<float> score(static_cast<size_t>(n));
      for (float& s : score) s = std::uniform_real_distribution<float>(-5, 5)(rng);
      PageSelection sel;
      sel.sink_pages = std::uniform_int_distribution<int>(0, 2)(rng);
      sel.window_tokens = std::uniform_int_distribution<int>(0, 40)(rng);
      sel.token_budget =
          sel.sink_pages * ps + sel.window_tokens + std::uniform_int_distribution<int>(1, 120)(rng);
      const AttentionStep got =
          select_pages(one_level({pages}, {kv_len}, ps), {score}, sel, ps, -1);
      std::set<int> kept;  // entry indices
      for (int32_t id : entry(got.levels[0], 0)) kept.insert(1000 - id);
      ASSERT_EQ(got.levels[0].kv_len(0, ps), (int(kept.size()) - 1) * ps + (kv_len - (n - 1) * ps));
      if (kv_len <= sel.token_budget) {
        EXPECT_EQ(int(kept.size()), n);
        continue;
      }
      int mandatory = 0;
      auto tokens = [&](int i) { return i == n - 1 ? kv_len - (n - 1) * ps : ps; };
      std::vector<char> must(size_t(n), 0);
      for (int i = 0; i < n; ++i) {
        const bool in_window = (i + 1) * ps > kv_len - sel.window_tokens;
        must[size_t(i)] = i < sel.sink_pages || in_window || i == n - 1;
        if (must[size_t(i)]) {
          ASSERT_TRUE(kept.count(i)) << "ps " << ps << " trial " << trial << " page " << i;
          mandatory += tokens(i);
        }
      }
      EXPECT_LE(mandatory, sel.sink_pages * ps + sel.window_tokens + ps);
      const int used = got.levels[0].kv_len(0, ps);
      EXPECT_LE(used, std::max(sel.token_budget, mandatory));
      float min_kept = INFINITY, max_dropped = -INFINITY;
      for (int i = 0; i < n; ++i) {
        if (must[size_t(i)]) continue;
        if (kept.count(i))
          min_kept = std::min(min_kept, score[size_t(i)]);
        else
          max_dropped = std::max(max_dropped, score[size_t(i)]);
      }
      EXPECT_GE(min_kept, max_dropped) << "ps " << ps << " trial " << trial;
      if (max_dropped > -INFINITY) {
        EXPECT_GT(used + ps, sel.token_budget);  // no room left
      }
    }
}

// Pages filled with random K/V, queries, bounds rebuilt from the contents.
struct Pool {
  AttentionShape shape;
  std::vector<float> pages, q;
  PageBounds bounds;
  Pool(int num_pages, int ps, int T) {
    shape = AttentionShape{.num_qo_heads = 4,
                           .num_kv_heads = 2,
                           .head_dim = 16,
                           .sm_scale = 0.25f,
                           .kv = KVCacheShape{1, num_pages, ps, 2, 16, KVLayout::NHD}};
    std::mt19937 rng(5);
    std::normal_distribution<float> n(0, 1);
    pages.resize(size_t(num_pages * shape.kv.elems_per_page()));
    for (float& x : pages) x = n(rng);
    q.resize(size_t(T * 4 * 16));
    for (float& x : q) x = 3 * n(rng);
    bounds = PageBounds(num_pages, 2, 16);
    for (int p = 0; p < num_pages; ++p) bounds.rebuild(p, pages.data(), shape.kv, ps);
  }
  std::vector<float> attend(const PagedKVBatch& b, std::vector<float>* lse = nullptr) const {
    std::vector<float> out(q.size());
    if (lse) lse->assign(q.size() / 16, 0);
    cpu_paged_attention(b, shape, q.data(), pages.data(), out.data(), lse ? lse->data() : nullptr);
    return out;
  }
};

// The same attention over a fresh pool holding copies of exactly the named pages, in order.
std::vector<float> gathered(const Pool& src, const std::vector<std::vector<int32_t>>& named,
                            const std::vector<int>& last_lens) {
  const int64_t per = src.shape.kv.elems_per_page();
  Pool dst = src;
  PagedKVBatch b;
  int next = 0;
  for (size_t e = 0; e < named.size(); ++e) {
    std::vector<int32_t> ids;
    for (int32_t p : named[e]) {
      std::copy_n(src.pages.begin() + p * per, per, dst.pages.begin() + next * per);
      ids.push_back(next++);
    }
    const int ps = src.shape.kv.page_size;
    b.add(1, ids, (int(ids.size()) - 1) * ps + last_lens[e], ps);
  }
  return dst.attend(b);
}

void expect_near(const std::vector<float>& a, const std::vector<float>& b, float tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << "at " << i;
}

TEST(PageSelection, SparseAttentionEqualsDenseOverSelectedPages) {
  const int ps = 4;
  Pool pool(80, ps, 3);
  std::vector<std::vector<int32_t>> pages(3);
  for (int i = 0; i < 25; ++i) pages[0].push_back(79 - i);
  for (int i = 0; i < 30; ++i) pages[1].push_back(i);
  for (int i = 0; i < 3; ++i) pages[2].push_back(40 + i);  // short: stays dense
  const std::vector<int> kv_lens = {97, 118, 10};
  const AttentionStep step = one_level(pages, kv_lens, ps);
  const auto scores = decode_page_scores(step, pool.bounds, pool.q.data(), 4);
  const AttentionStep sparse = select_pages(step, scores, {32, 1, 8}, ps, -1);
  std::vector<std::vector<int32_t>> named;
  for (int e = 0; e < 3; ++e) named.push_back(entry(sparse.levels[0], e));
  EXPECT_LT(named[0].size(), pages[0].size());
  EXPECT_EQ(named[2], pages[2]);
  expect_near(pool.attend(sparse.levels[0]), gathered(pool, named, {1, 2, 2}), 1e-5f);
  // The step's K/V goes into the same slots through the sparse step as through the dense one.
  std::vector<float> k(size_t(3 * 2 * 16)), v(k.size());
  for (size_t i = 0; i < k.size(); ++i) k[i] = float(i), v[i] = -float(i);
  std::vector<float> dense_pool = pool.pages, sparse_pool = pool.pages;
  cpu_append_kv(step.levels[0], pool.shape.kv, k.data(), v.data(), dense_pool.data());
  cpu_append_kv(sparse.levels[0], pool.shape.kv, k.data(), v.data(), sparse_pool.data());
  EXPECT_NE(dense_pool, pool.pages);
  EXPECT_EQ(sparse_pool, dense_pool);
  // A budget at least the context: the same step, the same attention bit for bit.
  const AttentionStep same = select_pages(step, scores, {118, 1, 8}, ps, -1);
  EXPECT_EQ(same.levels[0].kv_indices, step.levels[0].kv_indices);
  EXPECT_EQ(same.levels[0].kv_indptr, step.levels[0].kv_indptr);
  EXPECT_EQ(same.levels[0].kv_last_page_len, step.levels[0].kv_last_page_len);
  EXPECT_EQ(pool.attend(same.levels[0]), pool.attend(step.levels[0]));
}

TEST(PageSelection, CascadeSharedLevelStaysDense) {
  const int ps = 4;
  Pool pool(64, ps, 2);
  AttentionStep step;
  step.num_tokens = 2;
  step.levels.resize(2);
  step.levels[0].causal = false;
  step.levels[0].add(2, {60, 61, 62}, 12, ps);  // shared by both requests
  std::vector<std::vector<int32_t>> own(2);
  for (int i = 0; i < 20; ++i) own[0].push_back(i), own[1].push_back(20 + i);
  step.levels[1].add(1, own[0], 79, ps);
  step.levels[1].add(1, own[1], 80, ps);
  const auto scores = decode_page_scores(step, pool.bounds, pool.q.data(), 4);
  const AttentionStep sparse = select_pages(step, scores, {24, 1, 4}, ps, -1);
  EXPECT_EQ(sparse.levels[0].kv_indices, step.levels[0].kv_indices);
  EXPECT_EQ(sparse.levels[0].qo_indptr, step.levels[0].qo_indptr);
  EXPECT_FALSE(sparse.levels[0].causal);
  std::vector<float> lse_a, lse_b;
  std::vector<float> out = pool.attend(sparse.levels[0], &lse_a);
  const std::vector<float> own_out = pool.attend(sparse.levels[1], &lse_b);
  merge_attention_states(out.data(), lse_a.data(), own_out.data(), lse_b.data(), 2, 4, 16);
  std::vector<std::vector<int32_t>> named(2);
  for (int e = 0; e < 2; ++e) {
    named[size_t(e)] = {60, 61, 62};
    const auto kept = entry(sparse.levels[1], e);
    EXPECT_LE(sparse.levels[1].kv_len(e, ps), 24 + ps);
    named[size_t(e)].insert(named[size_t(e)].end(), kept.begin(), kept.end());
  }
  expect_near(out, gathered(pool, named, {3, 4}), 1e-5f);
}

TEST(PageSelection, PicksThePageWhoseKeyMatchesTheQuery) {
  const int ps = 4;
  Pool pool(16, ps, 1);
  for (float& x : pool.pages) x *= 0.1f;
  // Key of slot 2 of page 9, head 1 = the query of head 2 (kv head 1's group), scaled up.
  float* k = pool.pages.data() + 9 * pool.shape.kv.elems_per_page() +
             pool.shape.kv.offset_in_page(0, 2, 1);
  for (int d = 0; d < 16; ++d) k[d] = pool.q[size_t(2 * 16 + d)];
  for (int p = 0; p < 16; ++p) pool.bounds.rebuild(p, pool.pages.data(), pool.shape.kv, ps);
  std::vector<int32_t> pages;
  for (int i = 0; i < 16; ++i) pages.push_back(i);
  const AttentionStep step = one_level({pages}, {64}, ps);
  const auto scores = decode_page_scores(step, pool.bounds, pool.q.data(), 4);
  const AttentionStep got = select_pages(step, scores, {12, 1, 4}, ps, -1);
  EXPECT_EQ(entry(got.levels[0], 0), (std::vector<int32_t>{0, 9, 15}));
}

TEST(PageSelection, RejectsBadInput) {
  const int ps = 4;
  const AttentionStep step = one_level({{0, 1, 2, 3}}, {16}, ps);
  const std::vector<std::vector<float>> scores = {{0, 0, 0, 0}};
  auto msg = [&](const AttentionStep& s, const std::vector<std::vector<float>>& sc,
                 PageSelection sel, int window_left) -> std::string {
    try {
      select_pages(s, sc, sel, ps, window_left);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(msg(step, scores, {11, 1, 8}, -1).find("token budget 11 below"), std::string::npos);
  EXPECT_NE(msg(step, scores, {12, -1, 8}, -1).find("sink pages -1"), std::string::npos);
  EXPECT_NE(msg(step, scores, {12, 1, 8}, 100).find("window_left 100"), std::string::npos);
  EXPECT_NE(msg(step, {{0, 0}}, {12, 1, 8}, -1).find("4 pages but 2 scores"), std::string::npos);
  AttentionStep prefill;
  prefill.num_tokens = 3;
  prefill.levels.emplace_back();
  prefill.levels[0].add(3, {0, 1, 2, 3}, 16, ps);
  // A prefill chunk (several query rows) is read densely: passed through, its scores not read.
  const AttentionStep same = select_pages(prefill, {{}}, {12, 1, 8}, ps, -1);
  EXPECT_EQ(same.levels[0].kv_indices, prefill.levels[0].kv_indices);
  EXPECT_EQ(same.levels[0].qo_indptr, prefill.levels[0].qo_indptr);
  EXPECT_EQ(same.levels[0].kv_last_page_len, prefill.levels[0].kv_last_page_len);
  Pool pool(4, ps, 3);
  EXPECT_TRUE(decode_page_scores(prefill, pool.bounds, pool.q.data(), 4)[0].empty());
  EXPECT_THROW(decode_page_scores(step, pool.bounds, pool.q.data(), 3), Error);
  // A decode entry's scores must still match its pages.
  EXPECT_NE(msg(step, {{}}, {12, 1, 8}, -1).find("4 pages but 0 scores"), std::string::npos);
}

}  // namespace
}  // namespace nc

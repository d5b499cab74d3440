// window_view (kv/sliding_window.h): hand-built steps give the expected levels (shared entries
// kept, dropped, folded; own entries cut; levels wholly outside every window removed); steps the
// cascade planner builds (CascadeMode::Always, page sizes 1, 3 and 16, decodes and prefill
// chunks) give, for every query row, exactly the keys of its window (its positions p - W .. p
// from the request's own page list), with the shared levels read unmasked and the own level
// masked relative to its entry's end as the backends do; append slots never move; a negative
// window returns the step as it is; malformed steps are rejected with the reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "kv/cascade_planner.h"
#include "kv/sliding_window.h"
#include "shared_prefix_scenario.h"

namespace nc {
namespace {

struct Entry {
  int rows;
  std::vector<int32_t> pages;
  int kv_len;
};

PagedKVBatch level(const std::vector<Entry>& entries, bool causal, int ps) {
  PagedKVBatch b;
  b.causal = causal;
  for (const Entry& e : entries) b.add(e.rows, e.pages, e.kv_len, ps);
  return b;
}

AttentionStep step_of(std::vector<PagedKVBatch> levels) {
  AttentionStep s;
  s.num_tokens = levels.back().qo_indptr.back();
  s.levels = std::move(levels);
  return s;
}

void expect_same(const AttentionStep& got, const AttentionStep& want) {
  EXPECT_EQ(got.num_tokens, want.num_tokens);
  ASSERT_EQ(got.levels.size(), want.levels.size());
  for (size_t l = 0; l < got.levels.size(); ++l) {
    const PagedKVBatch &g = got.levels[l], &w = want.levels[l];
    EXPECT_EQ(g.qo_indptr, w.qo_indptr) << "level " << l;
    EXPECT_EQ(g.kv_indptr, w.kv_indptr) << "level " << l;
    EXPECT_EQ(g.kv_indices, w.kv_indices) << "level " << l;
    EXPECT_EQ(g.kv_last_page_len, w.kv_last_page_len) << "level " << l;
    EXPECT_EQ(g.causal, w.causal) << "level " << l;
  }
}

// A request as the model sees it: its whole page list and lengths (the step's i-th request).
struct Truth {
  int q_len, kv_len;
  std::vector<int32_t> pages;
};

using Key = std::pair<int32_t, int>;  // (page, slot)

// The keys `step` lets global row g read: every key of its shared entries, and in its own entry
// those at kv_len - q_len + j - W .. kv_len - q_len + j (j: its index in the entry).
std::vector<Key> keys_read(const AttentionStep& step, int g, int W, int ps) {
  std::vector<Key> keys;
  for (const PagedKVBatch& b : step.levels) {
    int e = 0;
    while (b.qo_indptr[e + 1] <= g) ++e;
    const int kv_len = b.kv_len(e, ps), j = g - b.qo_indptr[e];
    int lo = 0, hi = kv_len;
    if (b.causal) {
      hi = kv_len - b.q_len(e) + j + 1;
      lo = std::max(0, hi - 1 - W);
    }
    for (int t = lo; t < hi; ++t) keys.emplace_back(b.kv_indices[b.kv_indptr[e] + t / ps], t % ps);
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

// The keys row j of `r` must see: its positions p - W .. p.
std::vector<Key> window_keys(const Truth& r, int j, int W, int ps) {
  std::vector<Key> keys;
  const int p = r.kv_len - r.q_len + j;
  for (int t = std::max(0, p - W); t <= p; ++t) keys.emplace_back(r.pages[t / ps], t % ps);
  std::sort(keys.begin(), keys.end());
  return keys;
}

// The slots of the own level's entry r that the step's new K/V goes into.
std::vector<Key> append_slots(const AttentionStep& step, int r, int ps) {
  const PagedKVBatch& own = step.levels.back();
  std::vector<Key> slots;
  for (int t = own.kv_len(r, ps) - own.q_len(r); t < own.kv_len(r, ps); ++t)
    slots.emplace_back(own.kv_indices[own.kv_indptr[r] + t / ps], t % ps);
  return slots;
}

// Every property window_view promises, on `in` (whose requests are `truth`) and its view.
void check_view(const AttentionStep& in, const AttentionStep& out, const std::vector<Truth>& truth,
                int W, int ps) {
  ASSERT_EQ(out.num_tokens, in.num_tokens);
  ASSERT_FALSE(out.levels.empty());
  ASSERT_LE(out.levels.size(), in.levels.size());
  for (size_t l = 0; l + 1 < out.levels.size(); ++l) {
    EXPECT_GT(out.levels[l].kv_indices.size(), 0u) << "a level with no pages stayed: " << l;
    EXPECT_FALSE(out.levels[l].causal);
  }
  const PagedKVBatch &own_in = in.levels.back(), &own = out.levels.back();
  ASSERT_EQ(own.qo_indptr, own_in.qo_indptr);
  EXPECT_TRUE(own.causal);
  for (int r = 0; r < own.batch_size(); ++r) {
    EXPECT_EQ(append_slots(out, r, ps), append_slots(in, r, ps)) << "request " << r;
    EXPECT_EQ(own.kv_last_page_len[r], own_in.kv_last_page_len[r]);
    // Cut as far as it goes: the first page holds a key of the first row's window.
    EXPECT_GE(ps - 1, own.kv_len(r, ps) - own.q_len(r) - W) << "request " << r;
    for (int j = 0; j < truth[r].q_len; ++j)
      ASSERT_EQ(keys_read(out, own.qo_indptr[r] + j, W, ps), window_keys(truth[r], j, W, ps))
          << "request " << r << " row " << j << " W=" << W;
  }
}

// Two requests share 8 tokens (pages 10, 11; page size 4): A decodes at position 13 (own pages
// 20, 21: positions 8..13), B runs a 2-token chunk at 9..10 (own page 30).
AttentionStep two_sharers() {
  return step_of(
      {level({{3, {10, 11}, 8}}, false, 4), level({{1, {20, 21}, 6}, {2, {30}, 3}}, true, 4)});
}
const std::vector<Truth> kTwoSharers = {{1, 14, {10, 11, 20, 21}}, {2, 11, {10, 11, 30}}};

TEST(SlidingWindow, SharedEntryInsideEveryWindowIsKept) {
  const AttentionStep in = two_sharers();
  for (int W : {13, 14, 100}) {
    expect_same(window_view(in, W, 4), in);
    check_view(in, window_view(in, W, 4), kTwoSharers, W, 4);
  }
}

TEST(SlidingWindow, NegativeWindowReturnsTheStep) {
  const AttentionStep in = two_sharers();
  expect_same(window_view(in, -1, 4), in);
  // Even a step window_view would reject: no window, no view.
  AttentionStep odd = in;
  odd.levels.back().causal = false;
  expect_same(window_view(odd, -1, 4), odd);
}

TEST(SlidingWindow, StepWithoutRequestsStaysEmpty) {
  const AttentionStep in = step_of({PagedKVBatch{}});
  const AttentionStep out = window_view(in, 3, 4);
  expect_same(out, in);
  EXPECT_EQ(out.levels.back().batch_size(), 0);
}

TEST(SlidingWindow, SharedEntryPartlyOutsideOneSharerIsFoldedByAll) {
  // W = 12: A's window starts at 1, so the shared entry is cut for A; both fold it.
  const AttentionStep in = two_sharers();
  const AttentionStep out = window_view(in, 12, 4);
  expect_same(out, step_of({level({{1, {10, 11, 20, 21}, 14}, {2, {10, 11, 30}, 11}}, true, 4)}));
  check_view(in, out, kTwoSharers, 12, 4);
}

TEST(SlidingWindow, DroppedForOneSharerFoldedAndCutForTheOther) {
  // W = 5: A's window starts at 8 (the shared entry is wholly before it: dropped); B's first
  // row's starts at 4: B folds it, then cuts page 10 (positions 0..3).
  const AttentionStep in = two_sharers();
  const AttentionStep out = window_view(in, 5, 4);
  expect_same(out, step_of({level({{1, {20, 21}, 6}, {2, {11, 30}, 7}}, true, 4)}));
  check_view(in, out, kTwoSharers, 5, 4);
}

TEST(SlidingWindow, OwnEntryCutToItsWindow) {
  // W = 0: each row sees itself only. A keeps page 21 (positions 12..13); B's rows 9 and 10 sit
  // in its one page; the shared level is wholly outside every window and goes.
  const AttentionStep in = two_sharers();
  const AttentionStep out = window_view(in, 0, 4);
  expect_same(out, step_of({level({{1, {21}, 2}, {2, {30}, 3}}, true, 4)}));
  check_view(in, out, kTwoSharers, 0, 4);
}

// Three requests: X (pages 100, 101: positions 0..7) shared by A, B, C; Y (200, 201: 8..15)
// shared by B and C; A has an empty entry at level 1. A decodes at 17 (own pages 1, 2, 3 from
// position 8), B at 17 (own page 4 from 16), C runs `c_rows` rows ending at 15 + c_len.
AttentionStep three_sharers(int c_rows, int c_len) {
  return step_of({level({{2 + c_rows, {100, 101}, 8}}, false, 4),
                  level({{1, {}, 0}, {1 + c_rows, {200, 201}, 8}}, false, 4),
                  level({{1, {1, 2, 3}, 10}, {1, {4}, 2}, {c_rows, {5}, c_len}}, true, 4)});
}
std::vector<Truth> three_truth(int c_rows, int c_len) {
  return {{1, 18, {100, 101, 1, 2, 3}},
          {1, 18, {100, 101, 200, 201, 4}},
          {c_rows, 16 + c_len, {100, 101, 200, 201, 5}}};
}

TEST(SlidingWindow, FoldingALevelFoldsEveryLaterOne) {
  // W = 17: X lies inside A's and B's windows but not inside C's second row's (from 1): X is
  // folded by all three, and so is Y, although it lies inside B's and C's windows.
  const AttentionStep in = three_sharers(2, 3);
  const AttentionStep out = window_view(in, 17, 4);
  expect_same(out, step_of({level({{1, {100, 101, 1, 2, 3}, 18},
                                   {1, {100, 101, 200, 201, 4}, 18},
                                   {2, {100, 101, 200, 201, 5}, 19}},
                                  true, 4)}));
  check_view(in, out, three_truth(2, 3), 17, 4);
  // W = 18: everything lies inside every window; the step stays as it is.
  expect_same(window_view(in, 18, 4), in);
}

TEST(SlidingWindow, FoldedLevelsAreCutAfterFolding) {
  // W = 10: every window starts at 7 or later: X is folded (it holds 7), then page 100 is cut.
  const AttentionStep in = three_sharers(2, 3);
  const AttentionStep out = window_view(in, 10, 4);
  expect_same(
      out, step_of({level(
               {{1, {101, 1, 2, 3}, 14}, {1, {101, 200, 201, 4}, 14}, {2, {101, 200, 201, 5}, 15}},
               true, 4)}));
  check_view(in, out, three_truth(2, 3), 10, 4);
}

TEST(SlidingWindow, LevelWhollyBeforeEveryWindowGoesAndADeeperOneStays) {
  // W = 9, C decoding at 17: every window starts at 8. X is dropped by all three (its level
  // goes); Y is inside B's and C's windows and stays, with A's rows reading nothing there.
  const AttentionStep in = three_sharers(1, 2);
  const AttentionStep out = window_view(in, 9, 4);
  expect_same(out, step_of({level({{1, {}, 0}, {2, {200, 201}, 8}}, false, 4),
                            level({{1, {1, 2, 3}, 10}, {1, {4}, 2}, {1, {5}, 2}}, true, 4)}));
  check_view(in, out, three_truth(1, 2), 9, 4);
  // C with a second row (at 18): its last window starts at 9, Y is cut for it: B and C fold Y.
  const AttentionStep in2 = three_sharers(2, 3);
  const AttentionStep out2 = window_view(in2, 9, 4);
  expect_same(out2,
              step_of({level({{1, {1, 2, 3}, 10}, {1, {200, 201, 4}, 10}, {2, {200, 201, 5}, 11}},
                             true, 4)}));
  check_view(in2, out2, three_truth(2, 3), 9, 4);
}

struct Coverage {
  int kept = 0, removed_levels = 0, folded = 0, cut = 0;
};

void planner_case(std::mt19937& rng, int ps, int W, Coverage& cov,
                  const CascadePlanner* auto_planner = nullptr) {
  const testing::SharedPrefixScenario sc = testing::shared_prefix_scenario(rng, ps, 3, 7, 2 * ps);
  const CascadePlan plan = auto_planner ? auto_planner->plan(sc.reqs)
                                        : CascadePlanner(ps, CascadeMode::Always).plan(sc.reqs);
  std::vector<Truth> truth;
  for (int i : plan.order) truth.push_back({sc.reqs[i].q_len, sc.reqs[i].kv_len, sc.reqs[i].pages});
  const AttentionStep out = window_view(plan.step, W, ps);
  check_view(plan.step, out, truth, W, ps);
  for (const PagedKVBatch& b : out.levels) b.validate(out.num_tokens, ps, sc.num_pages);
  cov.kept += int(out.levels.size()) - 1;
  cov.removed_levels += int(plan.step.levels.size() - out.levels.size());
  const PagedKVBatch &own_in = plan.step.levels.back(), &own = out.levels.back();
  for (int r = 0; r < own.batch_size(); ++r) {
    // Pages before the own entry that no kept level reads are either folded or dropped; the
    // own level shrinking below its original pages is a cut.
    cov.folded += own.kv_len(r, ps) > own_in.kv_len(r, ps);
    cov.cut += own.num_pages(r) < own_in.num_pages(r);
  }
}

TEST(SlidingWindow, PlannerStepsSeeExactlyTheirWindows) {
  for (int ps : {1, 3, 16}) {
    std::mt19937 rng(1000 + ps);
    Coverage cov;
    for (int iter = 0; iter < 40; ++iter)
      for (int W : {0, 1, ps - 1, ps, 2 * ps + 1, 7, 20, 45, 90, 1000}) {
        SCOPED_TRACE("page size " + std::to_string(ps) + " W " + std::to_string(W) + " iter " +
                     std::to_string(iter));
        planner_case(rng, ps, W, cov);
        if (::testing::Test::HasFatalFailure()) return;
      }
    // The random steps reach every case.
    EXPECT_GT(cov.kept, 0) << "page size " << ps;
    EXPECT_GT(cov.removed_levels, 0) << "page size " << ps;
    EXPECT_GT(cov.folded, 0) << "page size " << ps;
    EXPECT_GT(cov.cut, 0) << "page size " << ps;
  }
}

// The cost model folds some levels and keeps deeper ones (review of 2026-12-07: a folded shallow
// level went into the own entries, out of sequence order, and the window saw the wrong keys).
TEST(SlidingWindow, AutoPlannerStepsSeeExactlyTheirWindows) {
  CascadeCostModel cost;
  cost.l2_resident_bytes = 0;
  cost.reread_bandwidth_bytes_per_us = cost.bandwidth_bytes_per_us;
  cost.extra_bytes_per_row = 0;
  for (double overhead : {0.02, 0.2, 2.0}) {
    cost.level_overhead_us = overhead;
    for (int ps : {1, 3, 16}) {
      const CascadePlanner planner(ps, CascadeMode::Auto, cost);
      std::mt19937 rng(2000 + ps);
      Coverage cov;
      for (int iter = 0; iter < 20; ++iter)
        for (int W : {0, ps, 2 * ps + 1, 20, 90, 1000}) {
          SCOPED_TRACE("overhead " + std::to_string(overhead) + " page size " + std::to_string(ps) +
                       " W " + std::to_string(W));
          planner_case(rng, ps, W, cov, &planner);
          if (::testing::Test::HasFatalFailure()) return;
        }
    }
  }
  // The reviewer's shape: a 1-page header for all (folded: it saves little), a 32-page prefix
  // per group of 4 (kept), a tail page each; the window reaches into the group prefix.
  const int ps = 16, W = 100;
  std::vector<Truth> truth;
  std::vector<CascadeRequest> reqs;
  for (int r = 0; r < 8; ++r) {
    CascadeRequest q;
    q.q_len = 1;
    q.pages.push_back(0);
    for (int i = 0; i < 32; ++i) q.pages.push_back((r < 4 ? 100 : 200) + i);
    q.pages.push_back(300 + r);
    q.kv_len = 33 * ps + 5;
    reqs.push_back(q);
  }
  cost.level_overhead_us = 0.2;
  const CascadePlan plan = CascadePlanner(ps, CascadeMode::Auto, cost).plan(reqs);
  ASSERT_GE(plan.step.levels.size(), 2u);  // the group prefixes are kept
  for (int i : plan.order) truth.push_back({reqs[i].q_len, reqs[i].kv_len, reqs[i].pages});
  check_view(plan.step, window_view(plan.step, W, ps), truth, W, ps);
}

void expect_rejected(const std::function<void()>& f, const std::string& words) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << words << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

TEST(SlidingWindow, MalformedStepsAreRejected) {
  expect_rejected([] { window_view(AttentionStep{}, 4, 4); }, "no levels");
  expect_rejected([] { window_view(two_sharers(), 4, 0); }, "page size 0");
  AttentionStep s = two_sharers();
  s.levels.back().causal = false;
  expect_rejected([&] { window_view(s, 4, 4); }, "not causal");
  // A shared entry over A's row and half of B's rows.
  s = step_of({level({{2, {10, 11}, 8}, {1, {}, 0}}, false, 4),
               level({{1, {20, 21}, 6}, {2, {30}, 3}}, true, 4)});
  expect_rejected([&] { window_view(s, 4, 4); }, "spans rows 0..2, not whole requests");
  // A shared entry ending in a partial page.
  s = step_of(
      {level({{3, {10, 11}, 7}}, false, 4), level({{1, {20, 21}, 6}, {2, {30}, 3}}, true, 4)});
  expect_rejected([&] { window_view(s, 4, 4); }, "partial page (3 of 4 slots)");
  // An own entry with no rows.
  s = step_of({level({{1, {20, 21}, 6}, {0, {30}, 3}}, true, 4)});
  expect_rejected([&] { window_view(s, 4, 4); }, "own entry 1 has 0 query rows");
  // Levels that disagree on the step's rows.
  s = two_sharers();
  s.num_tokens = 4;
  expect_rejected([&] { window_view(s, 4, 4); }, "level 0: paged batch: qo_indptr ends at 3");
  s = two_sharers();
  s.levels.back().kv_last_page_len[1] = 5;
  expect_rejected([&] { window_view(s, 4, 4); }, "last_page_len 5 of entry 1");
}

}  // namespace
}  // namespace nc

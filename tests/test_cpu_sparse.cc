// The CPU backend's sparse decode ops (backend.h, backend/cpu/cpu_sparse.h): update_page_bounds
// equals PageBounds rebuilt from the page contents (float32 NHD and HND, fp8 decoded and scaled)
// and leaves unlisted pages alone; sparse_attention equals dense attention() over exactly the
// pages select_pages keeps (1e-5; the step's K/V appended at the same slots), with a cascade
// shared level merged in, per-entry budgets (0: dense) and a prefill chunk in the same step left
// dense; a budget at least every context gives dense attention bit for bit; the kept pages hold
// the sinks, the window and the last page; selected_page_count predicts every kept count; bad
// plans (windowed layer, budget below sinks + window, wrong budget count) fail naming the value.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "core/fp8.h"
#include "kv/page_bounds.h"
#include "kv/page_selection.h"
#include "sparse_rig.h"

namespace nc {
namespace {

constexpr int kHq = 4, kHk = 2, kD = 16;

// SparseRig (tests/sparse_rig.h) over N(0, 1) pages with every page's bounds.
struct Rig : sparse_test::SparseRig {
  Rig(int num_pages, int ps, KVLayout layout = KVLayout::NHD)
      : SparseRig(
            AttentionShape{kHq, kHk, kD, 0.25f, KVCacheShape{1, num_pages, ps, kHk, kD, layout}},
            {ps, kHk, kD}, DType::F32, 7) {
    fill_pages(1.0f);
    update_all();
  }
};

std::vector<float> host(const Tensor& t) {
  return {t.ptr<float>(), t.ptr<float>() + t.numel()};
}

// Runs a step twice on copies of the pages: sparse_attention with `sel`, and attention() over the
// step select_pages makes from the same bounds and queries. Returns (sparse, reference) outputs
// and checks that both wrote the same pages.
std::pair<std::vector<float>, std::vector<float>> run_both(Rig& s, const AttentionStep& step,
                                                           const PageSelection& sel,
                                                           AttentionStep* selected = nullptr) {
  const int64_t T = step.num_tokens;
  Tensor q = s.rows(T, kHq * kD, 2.0f), k = s.rows(T, kHk * kD, 1), v = s.rows(T, kHk * kD, 1);
  const std::vector<float> before = host(s.pages);
  Tensor out = s.be->alloc({T, kHq * kD}, DType::F32), ref = s.be->alloc({T, kHq * kD}, DType::F32);
  const AttentionStep chosen = select_pages(
      step, decode_page_scores(step, s.view(), q.ptr<float>(), kHq), sel, s.shape.kv.page_size, -1);
  if (selected) *selected = chosen;
  s.be->sparse_attention(*s.be->plan_sparse_attention(step, s.shape, sel), q, k, v, s.pages,
                         s.bounds, out);
  const std::vector<float> after_sparse = host(s.pages);
  std::copy(before.begin(), before.end(), s.pages.ptr<float>());
  s.be->attention(*s.be->plan_attention(chosen, s.shape), q, k, v, s.pages, ref);
  EXPECT_EQ(after_sparse, host(s.pages)) << "the step's K/V went to other slots";
  return {host(out), host(ref)};
}

void expect_near(const std::vector<float>& a, const std::vector<float>& b, float tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << "at " << i;
}

std::vector<int32_t> pages_of(const PagedKVBatch& b, int e) {
  return {b.kv_indices.begin() + b.kv_indptr[e], b.kv_indices.begin() + b.kv_indptr[e + 1]};
}

TEST(CpuSparse, UpdatePageBoundsEqualsRebuildFromContents) {
  for (KVLayout layout : {KVLayout::NHD, KVLayout::HND}) {
    Rig s(6, 4, layout);
    PageBounds want(6, kHk, kD);
    for (int p = 0; p < 6; ++p) want.rebuild(p, s.pages.ptr<float>(), s.shape.kv, 4);
    // Pages 1 and 4 get other contents; only page 1 is listed, with 3 valid slots.
    for (int p : {1, 4})
      for (int64_t i = 0; i < s.shape.kv.elems_per_page(); ++i)
        s.pages.ptr<float>()[p * s.shape.kv.elems_per_page() + i] += 10.0f;
    s.update({1, 3});
    want.rebuild(1, s.pages.ptr<float>(), s.shape.kv, 3);
    const PageBounds got = s.view();
    for (int p = 0; p < 6; ++p)
      for (int i = 0; i < kHk * kD; ++i) {
        ASSERT_EQ(got.min(p)[i], want.min(p)[i]) << "page " << p << " at " << i;
        ASSERT_EQ(got.max(p)[i], want.max(p)[i]) << "page " << p << " at " << i;
      }
  }
}

TEST(CpuSparse, UpdatePageBoundsOfFp8PagesAreTheScaledKeys) {
  auto be = make_cpu_backend();
  KVCacheShape kv{1, 2, 4, kHk, kD, KVLayout::NHD};
  kv.fp8 = true;
  kv.k_scale = 0.5f;
  Tensor pages = be->alloc({2, 2, 4, kHk, kD}, DType::F8E4M3);
  std::vector<float> vals(size_t(pages.numel()));
  for (size_t i = 0; i < vals.size(); ++i) vals[i] = float(int(i % 29) - 14) / 4.0f;
  quantize_e4m3(vals.data(), int64_t(vals.size()), 1.0f, static_cast<uint8_t*>(pages.data()));
  Tensor bounds = be->alloc({2, 2, kHk, kD}, DType::F32), slots = be->alloc({1, 2}, DType::I32);
  const int32_t ps[2] = {1, 4};
  be->copy_from_host(slots, ps);
  be->update_page_bounds(pages, kv, slots, bounds);
  std::vector<float> decoded(vals.size());
  dequantize_e4m3(static_cast<const uint8_t*>(pages.data()), int64_t(vals.size()), decoded.data());
  for (float& x : decoded) x *= 0.5f;
  KVCacheShape f32 = kv;
  f32.fp8 = false;
  PageBounds want(2, kHk, kD);
  want.rebuild(1, decoded.data(), f32, 4);
  const PageBounds got = PageBounds::view(bounds.ptr<float>(), 2, kHk, kD);
  for (int i = 0; i < kHk * kD; ++i) {
    EXPECT_EQ(got.min(1)[i], want.min(1)[i]) << i;
    EXPECT_EQ(got.max(1)[i], want.max(1)[i]) << i;
  }
}

TEST(CpuSparse, SparseAttentionEqualsDenseOverSelectedPages) {
  const int ps = 4;
  Rig s(96, ps);
  AttentionStep step;
  step.levels.emplace_back();
  std::vector<int32_t> a, b, c;
  for (int i = 0; i < 25; ++i) a.push_back(95 - i);  // 97 tokens
  for (int i = 0; i < 30; ++i) b.push_back(i);       // 118 tokens
  for (int i = 0; i < 5; ++i) c.push_back(40 + i);   // a prefill chunk of 6 rows over 18 tokens
  step.levels[0].add(1, a, 97, ps);
  step.levels[0].add(1, b, 118, ps);
  step.levels[0].add(6, c, 18, ps);
  step.num_tokens = 8;
  const PageSelection sel{32, 1, 8};
  AttentionStep chosen;
  auto [got, ref] = run_both(s, step, sel, &chosen);
  expect_near(got, ref, 1e-5f);
  const PagedKVBatch& own = chosen.levels[0];
  EXPECT_LT(pages_of(own, 0).size(), a.size());
  EXPECT_EQ(pages_of(own, 2), c);  // the prefill chunk stays dense
  for (int e = 0; e < 2; ++e) {
    const std::vector<int32_t> kept = pages_of(own, e), all = e == 0 ? a : b;
    EXPECT_EQ(kept.front(), all.front()) << "sink page of entry " << e;
    // Window 8 tokens: the last page and the two before it for these lengths.
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(kept[kept.size() - 1 - i], all[all.size() - 1 - i]);
    EXPECT_LE(own.kv_len(e, ps), 32);
    const int n = int(all.size()), last = step.levels[0].kv_last_page_len[size_t(e)];
    EXPECT_EQ(int(kept.size()), selected_page_count(n, last, ps, 32, sel));
  }
}

TEST(CpuSparse, PerEntryBudgetsAndACascadeLevel) {
  const int ps = 4;
  Rig s(80, ps);
  AttentionStep step;
  step.num_tokens = 3;
  step.levels.resize(2);
  step.levels[0].causal = false;  // a shared prefix of 8 pages for the first two rows
  std::vector<int32_t> shared = {60, 61, 62, 63, 64, 65, 66, 67};
  step.levels[0].add(2, shared, 32, ps);
  step.levels[0].add(1, {}, 0, ps);
  std::vector<int32_t> a, b, c;
  for (int i = 0; i < 20; ++i) a.push_back(i), b.push_back(20 + i), c.push_back(40 + i);
  step.levels[1].add(1, a, 79, ps);
  step.levels[1].add(1, b, 80, ps);
  step.levels[1].add(1, c, 77, ps);
  PageSelection sel;
  sel.sink_pages = 1;
  sel.window_tokens = 4;
  sel.entry_budgets = {24, 0, 40};  // the second entry dense
  AttentionStep chosen;
  auto [got, ref] = run_both(s, step, sel, &chosen);
  expect_near(got, ref, 1e-5f);
  EXPECT_EQ(chosen.levels[0].kv_indices, step.levels[0].kv_indices);  // shared level untouched
  EXPECT_EQ(pages_of(chosen.levels[1], 1), b);
  EXPECT_EQ(int(pages_of(chosen.levels[1], 0).size()), selected_page_count(20, 3, ps, 24, sel));
  EXPECT_EQ(int(pages_of(chosen.levels[1], 2).size()), selected_page_count(20, 1, ps, 40, sel));
  EXPECT_LT(pages_of(chosen.levels[1], 2).size(), c.size());
}

TEST(CpuSparse, BudgetAtLeastTheContextIsDenseAttention) {
  const int ps = 4;
  Rig s(40, ps);
  AttentionStep step;
  step.num_tokens = 2;
  step.levels.emplace_back();
  std::vector<int32_t> a, b;
  for (int i = 0; i < 20; ++i) (i % 2 ? a : b).push_back(i);
  step.levels[0].add(1, a, 38, ps);
  step.levels[0].add(1, b, 40, ps);
  const int64_t T = 2;
  Tensor q = s.rows(T, kHq * kD, 2), k = s.rows(T, kHk * kD, 1), v = s.rows(T, kHk * kD, 1);
  const std::vector<float> before = host(s.pages);
  Tensor out = s.be->alloc({T, kHq * kD}, DType::F32), ref = s.be->alloc({T, kHq * kD}, DType::F32);
  s.be->sparse_attention(*s.be->plan_sparse_attention(step, s.shape, {40, 1, 8}), q, k, v, s.pages,
                         s.bounds, out);
  std::copy(before.begin(), before.end(), s.pages.ptr<float>());
  s.be->attention(*s.be->plan_attention(step, s.shape), q, k, v, s.pages, ref);
  EXPECT_EQ(host(out), host(ref));
}

TEST(CpuSparse, SelectedPageCountMatchesSelectionOnRandomEntries) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 300; ++trial) {
    const int ps = std::uniform_int_distribution<int>(1, 16)(rng);
    const int kv_len = std::uniform_int_distribution<int>(1, 400)(rng);
    const int n = (kv_len + ps - 1) / ps, last = kv_len - (n - 1) * ps;
    PageSelection sel;
    sel.sink_pages = std::uniform_int_distribution<int>(0, 3)(rng);
    sel.window_tokens = std::uniform_int_distribution<int>(0, 50)(rng);
    const int budget =
        sel.sink_pages * ps + sel.window_tokens + std::uniform_int_distribution<int>(1, 200)(rng);
    sel.token_budget = budget;
    std::vector<int32_t> pages(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) pages[size_t(i)] = i;
    AttentionStep step;
    step.num_tokens = 1;
    step.levels.emplace_back();
    step.levels[0].add(1, pages, kv_len, ps);
    std::vector<float> score(static_cast<size_t>(n));
    for (float& x : score) x = std::uniform_real_distribution<float>(-1, 1)(rng);
    const AttentionStep got = select_pages(step, {score}, sel, ps, -1);
    ASSERT_EQ(got.levels[0].num_pages(0), selected_page_count(n, last, ps, budget, sel))
        << "ps " << ps << " kv_len " << kv_len << " sinks " << sel.sink_pages << " window "
        << sel.window_tokens << " budget " << budget;
  }
}

std::string plan_error(Rig& s, const AttentionStep& step, const PageSelection& sel,
                       int window_left = -1) {
  AttentionShape shape = s.shape;
  shape.window_left = window_left;
  try {
    s.be->plan_sparse_attention(step, shape, sel);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(CpuSparse, BadPlansFailNamingTheValue) {
  Rig s(8, 4);
  AttentionStep step;
  step.num_tokens = 1;
  step.levels.emplace_back();
  step.levels[0].add(1, {0, 1, 2, 3}, 16, 4);
  EXPECT_NE(plan_error(s, step, {11, 1, 8}).find("token budget 11 below"), std::string::npos);
  PageSelection per;
  per.sink_pages = 1;
  per.window_tokens = 8;
  per.entry_budgets = {5};
  EXPECT_NE(plan_error(s, step, per).find("entry budget 5 below"), std::string::npos);
  per.entry_budgets = {16, 16};
  EXPECT_NE(plan_error(s, step, per).find("2 entry budgets for 1"), std::string::npos);
  EXPECT_NE(plan_error(s, step, {16, 1, 8}, 7).find("window_left 7"), std::string::npos);
  EXPECT_EQ(plan_error(s, step, {16, 1, 8}), "no error");
  Tensor bad_slots = s.be->alloc({1, 2}, DType::I32);
  const int32_t bad[2] = {3, 5};  // 5 slots in a page of 4
  s.be->copy_from_host(bad_slots, bad);
  EXPECT_THROW(s.be->update_page_bounds(s.pages, s.shape.kv, bad_slots, s.bounds), Error);
}

}  // namespace
}  // namespace nc

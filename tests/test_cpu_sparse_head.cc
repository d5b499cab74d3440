// Per-KV-head sparse decode attention on the CPU (PageSelection::per_head, kv/head_selection.h,
// backend/cpu/cpu_sparse.h): sparse_attention equals, for each KV head h, dense attention() over
// the step whose sparse entries keep exactly h's selected pages, read at h's query heads (1e-5),
// with a cascade shared level, a dense-budget entry and a prefill chunk in the same step; a budget
// at least every context gives dense attention bit for bit; every head keeps the sinks, the
// window and the last page, as many pages as the per-request rule; heads given keys that only
// they like pick different pages (where the per-request rule keeps one page for both); an NHD
// cache is refused naming the layout; head_page_batch names head pages 2 * p * Hk + h; an fp8
// cache (head pages copied as codes) agrees with its head references too.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "core/fp8.h"
#include "kv/head_selection.h"
#include "kv/page_bounds.h"
#include "kv/page_selection.h"
#include "sparse_rig.h"

namespace nc {
namespace test_cpu_sparse_head {

constexpr int kHq = 4, kHk = 2, kD = 16, kG = kHq / kHk;

// SparseRig (tests/sparse_rig.h) over an HND pool (NHD for the refusal test).
struct Rig : sparse_test::SparseRig {
  // Pages of N(0, scale) values; bounds left to update_all().
  Rig(int num_pages, int ps, float scale = 1.0f, KVLayout layout = KVLayout::HND)
      : SparseRig(
            AttentionShape{kHq, kHk, kD, 0.25f, KVCacheShape{1, num_pages, ps, kHk, kD, layout}},
            {kHk, ps, kD}, DType::F32, 11) {
    fill_pages(scale);
  }
  // An fp8 cache (e4m3 codes, k_scale 0.5, v_scale 0.25) of random values.
  Rig(int num_pages, int ps, bool)
      : SparseRig(fp8_shape(num_pages, ps), {kHk, ps, kD}, DType::F8E4M3, 11) {
    std::normal_distribution<float> n(0, 2);
    std::vector<float> vals(size_t(pages.numel()));
    for (float& x : vals) x = n(rng);
    quantize_e4m3(vals.data(), pages.numel(), 1.0f, static_cast<uint8_t*>(pages.data()));
  }
  static AttentionShape fp8_shape(int num_pages, int ps) {
    KVCacheShape kv{1, num_pages, ps, kHk, kD, KVLayout::HND};
    kv.fp8 = true;
    kv.k_scale = 0.5f;
    kv.v_scale = 0.25f;
    return AttentionShape{kHq, kHk, kD, 0.25f, kv};
  }
  float* key(int page, int h, int slot) {
    return pages.ptr<float>() + int64_t(page) * shape.kv.elems_per_page() +
           shape.kv.offset_in_page(0, slot, h);
  }
};

std::vector<float> host(const Tensor& t) {
  return {t.ptr<float>(), t.ptr<float>() + t.numel()};
}

std::vector<uint8_t> bytes(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.data());
  return {p, p + t.nbytes()};
}

PageSelection per_head(int budget, int sinks, int window) {
  PageSelection s{budget, sinks, window};
  s.per_head = true;
  return s;
}

// The step whose own-level sparse entries keep head h's pages of `hs`.
AttentionStep head_step(const AttentionStep& step, const HeadSelection& hs, int h, int ps) {
  AttentionStep out = step;
  const PagedKVBatch& own = step.levels.back();
  PagedKVBatch b;
  b.causal = own.causal;
  for (int e = 0; e < own.batch_size(); ++e) {
    if (hs.sparse(e)) {
      b.add_pages(1, hs.kept[size_t(e)][size_t(h)], hs.kv_len(e, ps), ps);
      continue;
    }
    std::vector<int32_t> pages(own.kv_indices.begin() + own.kv_indptr[e],
                               own.kv_indices.begin() + own.kv_indptr[e + 1]);
    b.add_pages(own.q_len(e), pages, own.kv_len(e, ps), ps);
  }
  out.levels.back() = b;
  return out;
}

// sparse_attention (per head) against, per KV head, attention() over that head's pages; also
// checks both wrote the same slots. Returns the selection.
HeadSelection check_against_heads(Rig& s, const AttentionStep& step, const PageSelection& sel,
                                  const Tensor* q_in = nullptr) {
  const int64_t T = step.num_tokens;
  const int ps = s.shape.kv.page_size;
  Tensor q = q_in ? *q_in : s.rows(T, kHq * kD, 2.0f);
  Tensor k = s.rows(T, kHk * kD, 1), v = s.rows(T, kHk * kD, 1);
  const std::vector<uint8_t> before = bytes(s.pages);
  const HeadSelection hs = select_head_pages(
      step, decode_head_page_scores(step, s.view(), q.ptr<float>(), kHq), sel, s.shape.kv, -1);
  Tensor out = s.be->alloc({T, kHq * kD}, DType::F32);
  s.be->sparse_attention(*s.be->plan_sparse_attention(step, s.shape, sel), q, k, v, s.pages,
                         s.bounds, out);
  const std::vector<uint8_t> after = bytes(s.pages);
  const std::vector<float> got = host(out);
  const PagedKVBatch& own = step.levels.back();
  for (int h = 0; h < kHk; ++h) {
    std::copy(before.begin(), before.end(), static_cast<uint8_t*>(s.pages.data()));
    Tensor ref = s.be->alloc({T, kHq * kD}, DType::F32);
    s.be->attention(*s.be->plan_attention(head_step(step, hs, h, ps), s.shape), q, k, v, s.pages,
                    ref);
    EXPECT_EQ(after, bytes(s.pages)) << "the step's K/V went to other slots";
    const std::vector<float> want = host(ref);
    for (int e = 0; e < own.batch_size(); ++e)
      for (int t = own.qo_indptr[e]; t < own.qo_indptr[e + 1]; ++t)
        for (int j = 0; j < kHq; ++j) {
          if (hs.sparse(e) && j / kG != h) continue;  // another head's pages
          for (int d = 0; d < kD; ++d) {
            const size_t i = (size_t(t) * kHq + j) * kD + d;
            EXPECT_NEAR(got[i], want[i], 1e-5f)
                << "entry " << e << " row " << t << " query head " << j << " dim " << d;
          }
        }
  }
  return hs;
}

TEST(CpuSparseHead, EqualsDenseOverEachHeadsPagesWithCascadeAndPrefill) {
  const int ps = 4;
  Rig s(120, ps);
  s.update_all();
  AttentionStep step;
  step.num_tokens = 9;
  step.levels.resize(2);
  step.levels[0].causal = false;  // a shared prefix of 6 pages for the first two decode rows
  step.levels[0].add(2, {100, 101, 102, 103, 104, 105}, 24, ps);
  step.levels[0].add(7, {}, 0, ps);
  std::vector<int32_t> a, b, c, p;
  for (int i = 0; i < 25; ++i) a.push_back(95 - i);  // 98 tokens
  for (int i = 0; i < 30; ++i) b.push_back(i);       // 118 tokens
  for (int i = 0; i < 12; ++i) c.push_back(30 + i);  // 45 tokens, dense by its budget
  for (int i = 0; i < 5; ++i) p.push_back(50 + i);   // a prefill chunk of 6 rows over 18 tokens
  step.levels[1].add(1, a, 98, ps);
  step.levels[1].add(1, b, 118, ps);
  step.levels[1].add(1, c, 45, ps);
  step.levels[1].add(6, p, 18, ps);
  PageSelection sel = per_head(0, 1, 8);
  sel.entry_budgets = {32, 40, 0, 32};
  const HeadSelection hs = check_against_heads(s, step, sel);
  EXPECT_TRUE(hs.sparse(0) && hs.sparse(1));
  EXPECT_FALSE(hs.sparse(2) || hs.sparse(3));  // budget 0; a prefill chunk
  for (int e = 0; e < 2; ++e) {
    const std::vector<int32_t>& all = e == 0 ? a : b;
    const int n = int(all.size()), last = step.levels[1].kv_last_page_len[size_t(e)];
    for (int h = 0; h < kHk; ++h) {
      const std::vector<int32_t>& kept = hs.kept[size_t(e)][size_t(h)];
      EXPECT_EQ(int(kept.size()), selected_page_count(n, last, ps, sel.budget(e), sel));
      EXPECT_EQ(kept.front(), all.front()) << "sink page of entry " << e << " head " << h;
      for (size_t i = 0; i < 3; ++i)  // the window's 8 tokens lie in the last 3 pages here
        EXPECT_EQ(kept[kept.size() - 1 - i], all[all.size() - 1 - i]) << "entry " << e;
      EXPECT_TRUE(std::is_sorted(kept.begin(), kept.end(), [&](int32_t x, int32_t y) {
        return std::find(all.begin(), all.end(), x) < std::find(all.begin(), all.end(), y);
      })) << "kept pages out of sequence order";
      EXPECT_LE(hs.kv_len(e, ps), sel.budget(e));
    }
  }
}

TEST(CpuSparseHead, HeadsPickTheirOwnPages) {
  const int ps = 4;
  Rig s(10, ps, 0.05f);
  // Page 3's keys point along dim 0 for KV head 0 only, page 6's for KV head 1 only.
  for (int slot = 0; slot < ps; ++slot) {
    s.key(3, 0, slot)[0] = 4.0f;
    s.key(6, 1, slot)[0] = 4.0f;
  }
  s.update_all();
  AttentionStep step;
  step.num_tokens = 1;
  step.levels.emplace_back();
  std::vector<int32_t> all;
  for (int i = 0; i < 10; ++i) all.push_back(i);
  step.levels[0].add(1, all, 40, ps);
  // Budget: the sink, the last page (window 4) and one more page.
  const PageSelection sel = per_head(12, 1, 4);
  Tensor q = s.rows(1, kHq * kD, 0.05f);
  for (int j = 0; j < kHq; ++j) q.ptr<float>()[j * kD] = 1.0f;  // every head asks along dim 0
  const HeadSelection hs = select_head_pages(
      step, decode_head_page_scores(step, s.view(), q.ptr<float>(), kHq), sel, s.shape.kv, -1);
  EXPECT_EQ(hs.kept[0][0], (std::vector<int32_t>{0, 3, 9}));
  EXPECT_EQ(hs.kept[0][1], (std::vector<int32_t>{0, 6, 9}));
  // The per-request rule keeps one of them for both heads.
  const AttentionStep one = select_pages(
      step, decode_page_scores(step, s.view(), q.ptr<float>(), kHq), {12, 1, 4}, ps, -1);
  EXPECT_EQ(one.levels[0].kv_indices.size(), 3u);
  // The attention over those pages, head by head.
  const HeadSelection again = check_against_heads(s, step, sel, &q);
  EXPECT_EQ(again.kept[0], hs.kept[0]);
  const PagedKVBatch hb = head_page_batch(hs, kHk, ps);
  ASSERT_EQ(hb.batch_size(), kHk);
  EXPECT_EQ(hb.kv_indices, (std::vector<int32_t>{0, 2 * 3 * kHk, 2 * 9 * kHk, 1, 2 * 6 * kHk + 1,
                                                 2 * 9 * kHk + 1}));
  EXPECT_EQ(hb.kv_len(0, ps), 12);
}

TEST(CpuSparseHead, BudgetAtLeastTheContextIsDenseAttention) {
  const int ps = 4;
  Rig s(60, ps);
  s.update_all();
  AttentionStep step;
  step.num_tokens = 4;
  step.levels.resize(2);
  step.levels[0].causal = false;
  step.levels[0].add(2, {50, 51, 52}, 12, ps);
  step.levels[0].add(2, {}, 0, ps);
  std::vector<int32_t> a, b;
  for (int i = 0; i < 20; ++i) (i % 2 ? a : b).push_back(i);
  step.levels[1].add(1, a, 38, ps);
  step.levels[1].add(1, b, 40, ps);
  step.levels[1].add(2, {30, 31}, 6, ps);
  Tensor q = s.rows(4, kHq * kD, 2), k = s.rows(4, kHk * kD, 1), v = s.rows(4, kHk * kD, 1);
  const std::vector<float> before = host(s.pages);
  Tensor out = s.be->alloc({4, kHq * kD}, DType::F32), ref = s.be->alloc({4, kHq * kD}, DType::F32);
  s.be->sparse_attention(*s.be->plan_sparse_attention(step, s.shape, per_head(40, 1, 8)), q, k, v,
                         s.pages, s.bounds, out);
  std::copy(before.begin(), before.end(), s.pages.ptr<float>());
  s.be->attention(*s.be->plan_attention(step, s.shape), q, k, v, s.pages, ref);
  EXPECT_EQ(host(out), host(ref));
}

TEST(CpuSparseHead, RandomStepsAgreeWithHeadReferences) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    const int ps = std::uniform_int_distribution<int>(1, 8)(rng);
    Rig s(200, ps);
    s.update_all();
    AttentionStep step;
    step.levels.emplace_back();
    std::vector<int32_t> ids(200);
    for (int i = 0; i < 200; ++i) ids[size_t(i)] = i;
    std::shuffle(ids.begin(), ids.end(), rng);
    size_t next = 0;
    const int B = std::uniform_int_distribution<int>(1, 4)(rng);
    for (int e = 0; e < B; ++e) {
      const int kv_len = std::uniform_int_distribution<int>(1, 40 * ps)(rng);
      const int n = (kv_len + ps - 1) / ps;
      step.levels[0].add(
          1, std::vector<int32_t>(ids.begin() + long(next), ids.begin() + long(next) + n), kv_len,
          ps);
      next += size_t(n);
    }
    step.num_tokens = B;
    const int budget = ps + 3 + std::uniform_int_distribution<int>(0, 20 * ps)(rng);
    check_against_heads(s, step, per_head(budget, 1, 3));
  }
}

TEST(CpuSparseHead, Fp8CacheAgreesWithHeadReferences) {
  const int ps = 4;
  Rig s(64, ps, true);
  s.update_all();
  AttentionStep step;
  step.num_tokens = 2;
  step.levels.emplace_back();
  std::vector<int32_t> a, b;
  for (int i = 0; i < 30; ++i) (i % 2 ? a : b).push_back(2 * i);
  step.levels[0].add(1, a, 59, ps);
  step.levels[0].add(1, b, 60, ps);
  const HeadSelection hs = check_against_heads(s, step, per_head(24, 1, 4));
  EXPECT_TRUE(hs.sparse(0) && hs.sparse(1));
  EXPECT_NE(hs.kept[0][0], hs.kept[0][1]) << "both heads kept the same pages: a weak check";
}

TEST(CpuSparseHead, AnNhdCacheIsRefusedNamingTheLayout) {
  Rig s(8, 4, 1.0f, KVLayout::NHD);
  s.update_all();
  AttentionStep step;
  step.num_tokens = 1;
  step.levels.emplace_back();
  step.levels[0].add(1, {0, 1, 2, 3}, 16, 4);
  try {
    s.be->plan_sparse_attention(step, s.shape, per_head(12, 1, 4));
    FAIL() << "an NHD cache took a per-head plan";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("HND layout"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("is NHD"), std::string::npos) << e.what();
  }
}

}  // namespace test_cpu_sparse_head
}  // namespace nc

// CascadePlanner: the planned multi-level AttentionStep, run through the CPU backend, must give
// the same attention as plain one-level paged attention over each request's whole page list
// (random sharing trees of 1 to 4 shared levels, empty levels, single-request groups, page
// sizes 1/16/64, prefill chunks and decodes mixed, shuffled request order); hand-built trees
// give the expected levels; the cost model turns levels on and off where its formula says.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "backend/backend.h"
#include "kv/cascade_planner.h"

namespace nc {
namespace test_cascade_planner {

constexpr int kHq = 4, kHk = 2, kD = 16;

// A random forest of shared prefix nodes (each a run of pages) and requests hanging off it.
struct SharedNode {
  int parent = -1;
  std::vector<int32_t> pages;
};

struct Scenario {
  int page_size = 16;
  std::vector<CascadeRequest> reqs;
  int num_pages = 0;
};

Scenario random_scenario(std::mt19937& rng, int page_size, int shared_depth, int num_reqs) {
  Scenario sc;
  sc.page_size = page_size;
  auto rnd = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int next_page = 0;
  std::vector<SharedNode> nodes;
  std::vector<int> frontier{-1};  // nodes of the previous depth (-1: the root)
  for (int d = 0; d < shared_depth; ++d) {
    std::vector<int> next;
    for (int parent : frontier) {
      const int kids = parent < 0 ? rnd(1, 2) : rnd(1, 3);
      for (int c = 0; c < kids; ++c) {
        SharedNode n;
        n.parent = parent;
        for (int p = rnd(1, 3); p > 0; --p) n.pages.push_back(next_page++);
        next.push_back(int(nodes.size()));
        nodes.push_back(std::move(n));
      }
    }
    frontier = std::move(next);
  }
  for (int r = 0; r < num_reqs; ++r) {
    // Its deepest shared node (or none), and how many of that node's pages it matched.
    const int pick = rnd(-1, int(nodes.size()) - 1);
    std::vector<int> chain;
    for (int n = pick; n >= 0; n = nodes[n].parent) chain.push_back(n);
    std::reverse(chain.begin(), chain.end());
    CascadeRequest q;
    for (size_t i = 0; i < chain.size(); ++i) {
      const auto& pages = nodes[chain[i]].pages;
      const int take = i + 1 == chain.size() ? rnd(1, int(pages.size())) : int(pages.size());
      q.pages.insert(q.pages.end(), pages.begin(), pages.begin() + take);
    }
    const int cached = int(q.pages.size()) * page_size;
    const int own_history = rnd(0, 2 * page_size + 3);  // private tokens already computed
    q.q_len = rnd(0, 2) == 0 ? rnd(1, std::min(3 * page_size + 5, 40)) : 1;  // prefill or decode
    q.kv_len = cached + own_history + q.q_len;
    const int total = (q.kv_len + page_size - 1) / page_size;
    while (int(q.pages.size()) < total) q.pages.push_back(next_page++);
    sc.reqs.push_back(std::move(q));
  }
  sc.num_pages = next_page;
  // Scatter physical page ids.
  std::vector<int32_t> perm(next_page);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  for (CascadeRequest& q : sc.reqs)
    for (int32_t& p : q.pages) p = perm[p];
  std::shuffle(sc.reqs.begin(), sc.reqs.end(), rng);
  return sc;
}

AttentionShape shape_for(const Scenario& sc) {
  return AttentionShape{
      kHq, kHk, kD, 1.0f / std::sqrt(float(kD)),
      KVCacheShape{1, std::max(sc.num_pages, 1), sc.page_size, kHk, kD, KVLayout::NHD}};
}

// Random page contents; slots past a request's last token are NaN so a level reading them shows.
std::vector<float> random_pages(const Scenario& sc, const AttentionShape& s, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> pages(size_t(s.kv.num_pages) * s.kv.elems_per_page());
  for (float& x : pages) x = normal(rng);
  for (const CascadeRequest& q : sc.reqs) {
    const int last = q.pages.back(), used = q.kv_len - (int(q.pages.size()) - 1) * sc.page_size;
    for (int slot = used; slot < sc.page_size; ++slot)
      for (int kv = 0; kv < 2; ++kv)
        for (int h = 0; h < kHk; ++h)
          std::fill_n(
              pages.begin() + last * s.kv.elems_per_page() + s.kv.offset_in_page(kv, slot, h), kD,
              std::nanf(""));
  }
  return pages;
}

// Runs `step` through the CPU backend: q/k/v rows in step order; returns out [T, Hq*D].
std::vector<float> run_step(const AttentionStep& step, const AttentionShape& s,
                            std::vector<float> pages, const std::vector<float>& q,
                            const std::vector<float>& k, const std::vector<float>& v) {
  auto be = make_cpu_backend();
  const int64_t T = step.num_tokens;
  std::vector<float> out(size_t(T) * kHq * kD, std::nanf(""));
  auto plan = be->plan_attention(step, s);
  be->attention(*plan, Tensor(const_cast<float*>(q.data()), {T, kHq * kD}, DType::F32),
                Tensor(const_cast<float*>(k.data()), {T, kHk * kD}, DType::F32),
                Tensor(const_cast<float*>(v.data()), {T, kHk * kD}, DType::F32),
                Tensor(pages.data(), {int64_t(pages.size())}, DType::F32),
                Tensor(out.data(), {T, kHq * kD}, DType::F32));
  return out;
}

// Rows of `x` (width w) regrouped by request: request order[i]'s rows come i-th.
std::vector<float> permute_rows(const std::vector<float>& x, size_t w,
                                const std::vector<CascadeRequest>& reqs,
                                const std::vector<int>& order) {
  std::vector<size_t> start(reqs.size() + 1, 0);
  for (size_t r = 0; r < reqs.size(); ++r) start[r + 1] = start[r] + reqs[r].q_len;
  std::vector<float> y;
  for (int r : order) y.insert(y.end(), x.begin() + start[r] * w, x.begin() + start[r + 1] * w);
  return y;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Checks the plan's structure: a permutation, shared levels non-causal with entries of two or
// more requests (or empty), and each request's pages split exactly across the levels.
void check_structure(const Scenario& sc, const CascadePlan& plan) {
  const int n = int(sc.reqs.size()), ps = sc.page_size;
  std::vector<int> sorted = plan.order;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < n; ++i) ASSERT_EQ(sorted[i], i);
  ASSERT_EQ(plan.stats.num_levels, int(plan.step.levels.size()));
  std::vector<int> row_req;  // step row -> input request
  for (int r : plan.order) row_req.insert(row_req.end(), sc.reqs[r].q_len, r);
  std::vector<std::vector<int32_t>> seen(n);
  std::vector<int> keys(n, 0);
  for (size_t l = 0; l < plan.step.levels.size(); ++l) {
    const PagedKVBatch& b = plan.step.levels[l];
    const bool last = l + 1 == plan.step.levels.size();
    ASSERT_EQ(b.causal, last);
    b.validate(plan.step.num_tokens, ps, sc.num_pages);
    for (int e = 0; e < b.batch_size(); ++e) {
      std::vector<int> members;
      for (int row = b.qo_indptr[e]; row < b.qo_indptr[e + 1]; ++row)
        if (members.empty() || members.back() != row_req[row]) members.push_back(row_req[row]);
      if (!last && b.num_pages(e) > 0) {
        EXPECT_GE(members.size(), 2u) << "level " << l;
      }
      if (last || b.num_pages(e) == 0) {
        ASSERT_EQ(members.size(), 1u);
      }
      for (int r : members) {
        seen[r].insert(seen[r].end(), b.kv_indices.begin() + b.kv_indptr[e],
                       b.kv_indices.begin() + b.kv_indptr[e + 1]);
        keys[r] += b.kv_len(e, ps);
      }
    }
  }
  for (int r = 0; r < n; ++r) {
    std::vector<int32_t> want = sc.reqs[r].pages;
    std::sort(want.begin(), want.end());
    std::sort(seen[r].begin(), seen[r].end());
    EXPECT_EQ(seen[r], want) << "request " << r;
    EXPECT_EQ(keys[r], sc.reqs[r].kv_len) << "request " << r;
  }
}

class CascadeRandom : public ::testing::TestWithParam<int> {};

TEST_P(CascadeRandom, MatchesPlainPagedAttention) {
  const int ps = GetParam();
  std::mt19937 rng(7000 + ps);
  for (int trial = 0; trial < 16; ++trial) {
    const int depth = 1 + trial % 4;
    const int num_reqs = 1 + int(rng() % 12);
    Scenario sc = random_scenario(rng, ps, depth, num_reqs);
    const AttentionShape shape = shape_for(sc);
    const std::vector<float> pages = random_pages(sc, shape, rng);
    int T = 0;
    for (const auto& q : sc.reqs) T += q.q_len;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> q(size_t(T) * kHq * kD), k(size_t(T) * kHk * kD), v(k.size());
    for (auto* x : {&q, &k, &v})
      for (float& e : *x) e = normal(rng);

    CascadePlan plain = CascadePlanner(ps, CascadeMode::Off).plan(sc.reqs);
    ASSERT_EQ(plain.step.levels.size(), 1u);
    const std::vector<float> expect = run_step(plain.step, shape, pages, q, k, v);

    for (CascadeMode mode : {CascadeMode::Always, CascadeMode::Auto}) {
      CascadeCostModel cost;
      // Auto then keeps every level that saves any byte.
      cost.level_overhead_us = 0.0;
      cost.kv_bytes_per_token = 2.0 * kHk * kD * 4;
      cost.extra_bytes_per_row = 0.0;
      cost.l2_resident_bytes = 0.0;
      cost.reread_bandwidth_bytes_per_us = cost.bandwidth_bytes_per_us;
      CascadePlan plan = CascadePlanner(ps, mode, cost).plan(sc.reqs);
      SCOPED_TRACE(::testing::Message() << "trial " << trial << " mode " << to_string(mode)
                                        << " levels " << plan.stats.num_levels);
      check_structure(sc, plan);
      if (HasFatalFailure()) return;
      EXPECT_LE(plan.stats.kv_bytes_cascade, plan.stats.kv_bytes_plain);
      if (plan.stats.num_kept_nodes > 0) {
        EXPECT_LT(plan.stats.kv_bytes_cascade, plan.stats.kv_bytes_plain);
      }
      const size_t wq = size_t(kHq) * kD, wk = size_t(kHk) * kD;
      const std::vector<float> got = run_step(
          plan.step, shape, pages, permute_rows(q, wq, sc.reqs, plan.order),
          permute_rows(k, wk, sc.reqs, plan.order), permute_rows(v, wk, sc.reqs, plan.order));
      for (float x : got) ASSERT_FALSE(std::isnan(x));
      EXPECT_LT(rel_err(got, permute_rows(expect, wq, sc.reqs, plan.order)), 1e-5);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(PageSizes, CascadeRandom, ::testing::Values(1, 16, 64));

// Builds a request whose pages are `shared` followed by fresh private pages.
CascadeRequest req(std::vector<int32_t> shared, int own_tokens, int q_len, int ps, int32_t& next) {
  CascadeRequest q;
  q.pages = std::move(shared);
  q.q_len = q_len;
  q.kv_len = int(q.pages.size()) * ps + own_tokens + q_len;
  while (int(q.pages.size()) * ps < q.kv_len) q.pages.push_back(next++);
  return q;
}

TEST(CascadePlanner, SystemPromptAndConversationsGiveThreeLevels) {
  const int ps = 4;
  int32_t next = 100;
  const std::vector<int32_t> sys{0, 1}, conv_a{0, 1, 2}, conv_b{0, 1, 3, 4};
  // Input interleaves the conversations; the planner groups them.
  std::vector<CascadeRequest> reqs{req(conv_a, 1, 1, ps, next), req(conv_b, 0, 5, ps, next),
                                   req(conv_a, 2, 1, ps, next), req(conv_b, 3, 1, ps, next),
                                   req({}, 0, 6, ps, next)};
  CascadePlan plan = CascadePlanner(ps, CascadeMode::Always).plan(reqs);
  EXPECT_EQ(plan.order, (std::vector<int>{0, 2, 1, 3, 4}));
  ASSERT_EQ(plan.step.levels.size(), 3u);
  const PagedKVBatch& l0 = plan.step.levels[0];
  EXPECT_FALSE(l0.causal);
  EXPECT_EQ(l0.qo_indptr, (std::vector<int32_t>{0, 8, 14}));  // sys for 4 requests; one empty
  EXPECT_EQ(l0.kv_indices, sys);
  EXPECT_EQ(l0.kv_last_page_len, (std::vector<int32_t>{ps, 0}));
  const PagedKVBatch& l1 = plan.step.levels[1];
  EXPECT_EQ(l1.qo_indptr, (std::vector<int32_t>{0, 2, 8, 14}));
  EXPECT_EQ(l1.kv_indices, (std::vector<int32_t>{2, 3, 4}));
  EXPECT_EQ(l1.kv_indptr, (std::vector<int32_t>{0, 1, 3, 3}));
  const PagedKVBatch& own = plan.step.levels[2];
  EXPECT_TRUE(own.causal);
  EXPECT_EQ(own.qo_indptr, (std::vector<int32_t>{0, 1, 2, 7, 8, 14}));
  EXPECT_EQ(own.kv_len(0, ps), 2);  // 1 own + 1 new
  EXPECT_EQ(own.kv_len(2, ps), 5);
  EXPECT_EQ(own.kv_len(4, ps), 6);
  EXPECT_EQ(plan.stats.pages_per_level, (std::vector<int>{2, 3, 7}));
  // Already-grouped input keeps its order.
  std::vector<CascadeRequest> grouped;
  for (int i : plan.order) grouped.push_back(reqs[i]);
  EXPECT_EQ(CascadePlanner(ps, CascadeMode::Always).plan(grouped).order,
            (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(CascadePlanner, SingleRequestGroupsAndUnsharedPagesStayInTheOwnLevel) {
  const int ps = 2;
  int32_t next = 50;
  std::vector<CascadeRequest> reqs{req({0, 1, 2}, 1, 1, ps, next), req({3, 4}, 0, 2, ps, next)};
  CascadePlan plan = CascadePlanner(ps, CascadeMode::Always).plan(reqs);
  EXPECT_EQ(plan.step.levels.size(), 1u);
  EXPECT_EQ(plan.stats.num_shared_nodes, 0);
  EXPECT_EQ(plan.stats.kv_bytes_cascade, plan.stats.kv_bytes_plain);
}

TEST(CascadePlanner, NewTokensInASharedPageAreRejected) {
  const int ps = 4;
  CascadeRequest a{1, 6, {0, 1}}, b{3, 6, {0, 1}};  // page 1 takes new tokens: cannot be shared
  EXPECT_THROW(CascadePlanner(ps).plan({a, b}), Error);
  CascadeRequest c{1, 9, {0, 1, 2}}, d{1, 9, {1, 0, 3}};  // same pages at other positions
  EXPECT_THROW(CascadePlanner(ps).plan({c, d}), Error);
  CascadeRequest e{1, 9, {0, 1}};  // too few pages
  EXPECT_THROW(CascadePlanner(ps).plan({e}), Error);
  CascadeRequest f{0, 4, {7}};
  EXPECT_THROW(CascadePlanner(ps).plan({f}), Error);
}

TEST(CascadePlanner, MaxSharedPagesLimitsSharing) {
  const int ps = 4;
  int32_t next = 10;
  std::vector<CascadeRequest> reqs{req({0, 1}, 0, 1, ps, next), req({0, 1}, 0, 1, ps, next)};
  reqs[0].max_shared_pages = 1;
  CascadePlan plan = CascadePlanner(ps, CascadeMode::Always).plan(reqs);
  ASSERT_EQ(plan.step.levels.size(), 2u);
  EXPECT_EQ(plan.step.levels[0].kv_indices, (std::vector<int32_t>{0}));
}

// Default cost model (an 8-kv-head, 32-query-head, 128-dim bf16 layer; the constants measured on
// the H100): a level pays when the time its nodes save exceeds its fixed overhead plus its
// per-row cost.
TEST(CascadeCostModel, SwitchesWhereTheFormulaSays) {
  const int ps = 16;
  const CascadeCostModel cost;
  auto shared_levels = [&](int sharers, int shared_pages, int q_len) {
    int32_t next = 1 << 20;
    std::vector<int32_t> prefix(shared_pages);
    std::iota(prefix.begin(), prefix.end(), 0);
    std::vector<CascadeRequest> reqs;
    for (int i = 0; i < sharers; ++i) reqs.push_back(req(prefix, 5, q_len, ps, next));
    return CascadePlanner(ps, CascadeMode::Auto, cost).plan(reqs).stats.num_levels - 1;
  };
  EXPECT_EQ(shared_levels(2, 1, 1), 0);      // 2 sharers of 1 page: off
  EXPECT_EQ(shared_levels(64, 64, 1), 0);    // 4 MiB per layer: stays in L2, off
  EXPECT_EQ(shared_levels(64, 512, 1), 1);   // 32 MiB per layer, 64 decodes: on
  EXPECT_EQ(shared_levels(3, 512, 1), 0);    // 3 sharers re-read it at the L2-aided rate: off
  EXPECT_EQ(shared_levels(64, 512, 4), 1);   // short prefill chunks: still on
  EXPECT_EQ(shared_levels(64, 512, 64), 0);  // long chunks: compute-bound either way, off
  // Many groups whose prefixes fit in L2 one by one but not together (the shared-prefix serving
  // workload: 2k-token system prompts at 4 KiB per token, 16 decodes each): plain attention
  // re-reads them from memory, so each group's level pays; one such group alone stays off.
  auto groups_levels = [&](int groups, int sharers, int shared_pages) {
    int32_t next = 1 << 20;
    std::vector<CascadeRequest> reqs;
    for (int g = 0; g < groups; ++g) {
      std::vector<int32_t> prefix(shared_pages);
      std::iota(prefix.begin(), prefix.end(), g * shared_pages);
      for (int i = 0; i < sharers; ++i) reqs.push_back(req(prefix, 9, 1, ps, next));
    }
    return CascadePlanner(ps, CascadeMode::Auto, cost).plan(reqs).stats;
  };
  EXPECT_EQ(groups_levels(1, 16, 128).num_levels, 1);
  const CascadeStats many = groups_levels(32, 16, 128);
  EXPECT_EQ(many.num_levels, 2);
  EXPECT_EQ(many.num_kept_nodes, 32);
  // Monotone in the number of sharers; and the switch sits where the formula crosses zero.
  for (int pages : {1, 16, 256, 1024}) {
    bool on = false;
    for (int sharers = 2; sharers <= 64; sharers *= 2) {
      const bool now_on = shared_levels(sharers, pages, 1) == 1;
      EXPECT_TRUE(now_on || !on) << pages << " pages, " << sharers << " sharers";
      on = now_on;
      const int64_t tokens = int64_t(pages) * ps;
      const double net = cost.saved_us(sharers, sharers, tokens, cost.fits_l2(tokens)) -
                         cost.level_cost_us(sharers);
      if (std::abs(net) > 1e-9) {
        EXPECT_EQ(now_on, net > 0) << pages << " pages, " << sharers;
      }
    }
  }
  // A deep level that does not pay is folded while the top one stays.
  int32_t next = 1 << 20;
  std::vector<int32_t> big(512);
  std::iota(big.begin(), big.end(), 0);
  std::vector<CascadeRequest> reqs;
  for (int i = 0; i < 32; ++i) {
    std::vector<int32_t> p = big;
    if (i < 2) p.push_back(1000);  // 2 requests share one more page
    reqs.push_back(req(p, 3, 1, ps, next));
  }
  CascadePlan plan = CascadePlanner(ps, CascadeMode::Auto, cost).plan(reqs);
  EXPECT_EQ(plan.stats.num_shared_nodes, 2);
  EXPECT_EQ(plan.stats.num_kept_nodes, 1);
  EXPECT_EQ(plan.stats.num_levels, 2);
  // Off never builds levels.
  EXPECT_EQ(CascadePlanner(ps, CascadeMode::Off, cost).plan(reqs).stats.num_levels, 1);
}

// The cost model against the decode case measured on the H100 (32 query and kv heads, head_dim
// 128, page 16, decode steps with 128-token suffixes; docs/benchmarks.md): cascade lost at
// shared prefixes of 256 tokens and less and won from 1k tokens at batch 64 and more.
TEST(CascadeCostModel, MeasuredH100DecodeSwitch) {
  const int ps = 16;
  CascadeCostModel cost;
  cost.kv_bytes_per_token = 2 * 32 * 128 * 2;
  cost.flops_per_row_token = 4 * 32 * 128;
  auto on = [&](int prefix, int batch) {
    int32_t next = 1 << 20;
    std::vector<int32_t> pages(size_t(prefix / ps));
    std::iota(pages.begin(), pages.end(), 0);
    std::vector<CascadeRequest> reqs;
    for (int i = 0; i < batch; ++i) reqs.push_back(req(pages, 128, 1, ps, next));
    return CascadePlanner(ps, CascadeMode::Auto, cost).plan(reqs).stats.num_levels > 1;
  };
  for (int batch : {16, 64, 128, 256})
    for (int prefix : {16, 64, 128, 256, 512}) EXPECT_FALSE(on(prefix, batch)) << prefix;
  for (int batch : {64, 128, 256})
    for (int prefix : {1024, 4096, 32768}) EXPECT_TRUE(on(prefix, batch)) << prefix;
  EXPECT_FALSE(on(1024, 16));
  EXPECT_TRUE(on(4096, 16));
  EXPECT_TRUE(on(32768, 16));
}

TEST(CascadeCostModel, MaxSharedLevelsCapsTheDepth) {
  const int ps = 1;
  CascadeCostModel cost;
  cost.level_overhead_us = 0;
  cost.extra_bytes_per_row = 0;
  cost.max_shared_levels = 2;
  // A staircase: request i shares i+1 pages with the next ones -> 5 nested shared nodes.
  int32_t next = 1000;
  std::vector<CascadeRequest> reqs;
  for (int i = 0; i < 6; ++i) {
    std::vector<int32_t> p(size_t(i) + 1);
    std::iota(p.begin(), p.end(), 0);
    reqs.push_back(req(p, 0, 1, ps, next));
  }
  CascadePlan plan = CascadePlanner(ps, CascadeMode::Auto, cost).plan(reqs);
  EXPECT_EQ(plan.stats.num_shared_nodes, 5);
  EXPECT_EQ(plan.stats.num_levels, 3);
  EXPECT_EQ(CascadePlanner(ps, CascadeMode::Always, cost).plan(reqs).stats.num_levels, 6);
}

}  // namespace test_cascade_planner
}  // namespace nc

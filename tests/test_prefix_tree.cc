// PrefixTree over a PagePool: match/insert/split/dedup/evict by hand, then a property test of
// random request arrivals, multi-turn follow-ups, decodes, preemptions, finishes, aborts and
// evictions under a small pool, checking after every operation the tree and refcount
// invariants, that a matched page really holds the K/V of the prompt prefix it is matched for
// (each page records the token prefix its contents were computed from), that no shared page is
// ever written, that no referenced page is evicted, and that nothing leaks at the end.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "kv/prefix_tree.h"

namespace nc {
namespace {

// Tokens 0..n-1 shifted by `base`.
std::vector<int32_t> seq(int n, int base = 0) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), base);
  return t;
}

std::vector<int32_t> cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

PrefixTreeOptions opts(int page_size, bool enabled = true) {
  PrefixTreeOptions o;
  o.page_size = page_size;
  o.enabled = enabled;
  return o;
}

// Tree and pool invariants, with `live` the page lists of all live requests.
void check(const PrefixTree& tree, std::vector<std::vector<int32_t>> live) {
  tree.check_invariants(&live);
}

// A request that computed `tokens` into freshly allocated pages.
std::vector<int32_t> compute(PagePool& pool, int num_tokens, int ps) {
  std::vector<int32_t> pages;
  EXPECT_TRUE(pool.allocate((num_tokens + ps - 1) / ps, pages));
  return pages;
}

TEST(PrefixTree, InsertThenMatchWholePagesOnly) {
  const int ps = 4;
  PagePool pool(16);
  PrefixTree tree(pool, opts(ps));
  const auto prompt = seq(14);  // 3 full pages + 2 tokens
  auto pages = compute(pool, 14, ps);
  EXPECT_EQ(tree.insert(prompt, pages), 3);
  pool.dec_ref_all(pages);
  EXPECT_EQ(pool.num_cached(), 3);  // the partial 4th page went back to the free list
  EXPECT_EQ(pool.num_free(), 13);
  tree.check_invariants();

  PrefixMatch m = tree.match(cat(seq(13), {99, 98, 97}));
  EXPECT_EQ(m.num_tokens, 12);
  EXPECT_EQ(m.pages, (std::vector<int32_t>{pages[0], pages[1], pages[2]}));
  ASSERT_EQ(m.path.size(), 1u);
  EXPECT_EQ(m.path[0].num_pages, 3);
  for (int32_t p : m.pages) EXPECT_EQ(pool.refcount(p), 1);
  check(tree, {m.pages});
  EXPECT_EQ(tree.match(seq(3)).num_tokens, 0);  // shorter than a page
  EXPECT_EQ(tree.match({}).num_tokens, 0);
  const auto other = cat({7}, seq(11, 1));  // differs in the first token
  EXPECT_EQ(tree.match(other).num_tokens, 0);
  pool.dec_ref_all(m.pages);
  const PrefixTreeStats st = tree.stats();
  EXPECT_EQ(st.hit_tokens, 12);
  EXPECT_EQ(st.queried_tokens, 16 + 3 + 0 + 12);
}

TEST(PrefixTree, FullHitKeepsTheLastTokenToCompute) {
  const int ps = 4;
  PagePool pool(8);
  PrefixTree tree(pool, opts(ps));
  auto pages = compute(pool, 8, ps);
  tree.insert(seq(8), pages);
  pool.dec_ref_all(pages);
  PrefixMatch exact = tree.match(seq(8));  // 2 pages cached, but the last token must be computed
  EXPECT_EQ(exact.num_tokens, 4);
  PrefixMatch longer = tree.match(seq(9));
  EXPECT_EQ(longer.num_tokens, 8);
  pool.dec_ref_all(exact.pages);
  pool.dec_ref_all(longer.pages);
  // The capped match split the node: [page0] -> [page1].
  EXPECT_EQ(tree.stats().num_nodes, 2);
  check(tree, {});
}

TEST(PrefixTree, DivergenceSplitsNodes) {
  const int ps = 2;
  PagePool pool(32);
  PrefixTree tree(pool, opts(ps));
  const auto a = seq(8);                         // blocks 01 23 45 67
  const auto b = cat(seq(4), {40, 41, 42, 43});  // shares 01 23
  auto pa = compute(pool, 8, ps);
  tree.insert(a, pa);
  pool.dec_ref_all(pa);
  // b matched nothing (it arrived before a finished): its pages duplicate a's first two blocks.
  auto pb = compute(pool, 8, ps);
  const auto pb_own = pb;
  EXPECT_EQ(tree.insert(b, pb), 2);  // only 2 pages are new
  EXPECT_EQ(pb[0], pa[0]);           // duplicates swapped for the tree's pages
  EXPECT_EQ(pb[1], pa[1]);
  EXPECT_EQ(pb[2], pb_own[2]);
  EXPECT_EQ(pool.state(pb_own[0]), PageState::Free);  // its own copies are freed
  EXPECT_EQ(pool.state(pb_own[1]), PageState::Free);
  EXPECT_EQ(pool.refcount(pa[0]), 1);
  check(tree, {pb});
  pool.dec_ref_all(pb);
  EXPECT_EQ(tree.stats().num_nodes, 3);  // [01 23] -> {[45 67], [40.. 42..]}
  EXPECT_EQ(tree.stats().deduplicated_pages, 2);

  PrefixMatch m = tree.match(cat(b, {1}));
  EXPECT_EQ(m.num_tokens, 8);
  ASSERT_EQ(m.path.size(), 2u);
  EXPECT_EQ(m.path[0].num_pages, 2);
  EXPECT_EQ(m.path[1].num_pages, 2);
  EXPECT_EQ(m.pages, (std::vector<int32_t>{pa[0], pa[1], pb[2], pb[3]}));
  // A match ending inside a node splits it so the path is whole nodes.
  PrefixMatch m2 = tree.match(cat(seq(6), {9, 9, 9}));
  EXPECT_EQ(m2.num_tokens, 6);
  ASSERT_EQ(m2.path.size(), 2u);
  EXPECT_EQ(m2.path[1].num_pages, 1);
  EXPECT_EQ(tree.stats().num_nodes, 4);
  check(tree, {m.pages, m2.pages});
  pool.dec_ref_all(m.pages);
  pool.dec_ref_all(m2.pages);
  EXPECT_EQ(tree.evict_all(), 6);
  EXPECT_EQ(pool.num_free(), 32);
}

TEST(PrefixTree, EvictsLeastRecentlyUsedLeavesAndNeverReferencedPages) {
  const int ps = 1;
  PagePool pool(6);
  PrefixTree tree(pool, opts(ps));
  auto insert = [&](const std::vector<int32_t>& t) {
    auto p = compute(pool, int(t.size()), ps);
    tree.insert(t, p);
    pool.dec_ref_all(p);
    return p;
  };
  const auto pa = insert({1, 2});  // oldest
  const auto pb = insert({3, 4});
  const auto pc = insert({5, 6});
  pool.dec_ref_all(tree.match({1, 2, 0}).pages);  // a becomes the most recent
  EXPECT_EQ(tree.evict(1), 2);                    // one whole leaf: b
  EXPECT_EQ(pool.state(pb[0]), PageState::Free);
  EXPECT_EQ(pool.state(pa[0]), PageState::Cached);
  PrefixMatch held = tree.match({5, 6, 0});  // c in use
  EXPECT_EQ(tree.evict_all(), 2);            // only a can go
  EXPECT_EQ(pool.state(pc[0]), PageState::Used);
  EXPECT_TRUE(pool.held_by_cache(pc[1]));
  check(tree, {held.pages});
  pool.dec_ref_all(held.pages);
  EXPECT_EQ(pool.state(pc[1]), PageState::Cached);
  EXPECT_EQ(tree.evict_all(), 2);
  EXPECT_EQ(pool.num_free(), 6);
  EXPECT_EQ(tree.stats().num_nodes, 0);
}

TEST(PrefixTree, PoolAllocationEvictsThroughTheEvictor) {
  const int ps = 2;
  PagePool pool(4);
  PrefixTree tree(pool, opts(ps));
  auto p = compute(pool, 8, ps);
  tree.insert(seq(8), p);
  pool.dec_ref_all(p);
  EXPECT_EQ(pool.num_cached(), 4);
  EXPECT_EQ(pool.num_available(), 4);
  std::vector<int32_t> got;
  EXPECT_TRUE(pool.allocate(3, got));  // the whole leaf chain gives its pages back
  EXPECT_EQ(tree.stats().num_pages, 0);
  check(tree, {got});
  pool.dec_ref_all(got);
}

TEST(PrefixTree, ParentsAreEvictedAfterTheirChildren) {
  const int ps = 1;
  PagePool pool(8);
  PrefixTree tree(pool, opts(ps));
  auto p1 = compute(pool, 4, ps);
  tree.insert({1, 2, 3, 4}, p1);
  pool.dec_ref_all(p1);
  auto p2 = compute(pool, 4, ps);
  tree.insert({1, 2, 7, 8}, p2);  // splits [1 2] off; 2 duplicates swapped back
  pool.dec_ref_all(p2);
  PrefixMatch m = tree.match({1, 2, 3, 4, 5});  // the [3 4] leaf is now the newest
  pool.dec_ref_all(m.pages);
  EXPECT_EQ(tree.evict(1), 2);  // the [7 8] leaf
  EXPECT_EQ(tree.stats().num_nodes, 2);
  EXPECT_EQ(tree.evict(3), 4);  // [3 4], then its parent [1 2]
  EXPECT_EQ(pool.num_free(), 8);
}

TEST(PrefixTree, PinnedSessionsAreEvictedLast) {
  const int ps = 1;
  double now = 10.0;
  PagePool pool(8);
  PrefixTreeOptions o = opts(ps);
  o.policy = std::make_shared<PinnedSessionPolicy>();
  o.clock = [&] { return now; };
  PrefixTree tree(pool, o);
  tree.pin_session(7, 100.0);
  auto insert = [&](const std::vector<int32_t>& t, int64_t session) {
    auto p = compute(pool, int(t.size()), ps);
    tree.insert(t, p, session);
    pool.dec_ref_all(p);
    return p;
  };
  const auto pinned = insert({1, 1}, 7);  // oldest, but pinned
  const auto a = insert({2, 2}, -1);
  const auto b = insert({3, 3}, 8);  // session 8 is not pinned
  EXPECT_EQ(tree.evict(1), 2);
  EXPECT_EQ(pool.state(a[0]), PageState::Free);
  EXPECT_EQ(tree.evict(1), 2);
  EXPECT_EQ(pool.state(b[0]), PageState::Free);
  EXPECT_EQ(pool.state(pinned[0]), PageState::Cached);
  // Once nothing else is left the pinned node goes too.
  const auto c = insert({4, 4}, -1);
  now = 200.0;  // pin expired: plain LRU again, and the pinned node is the oldest
  EXPECT_EQ(tree.evict(1), 2);
  EXPECT_EQ(pool.state(pinned[0]), PageState::Free);
  EXPECT_EQ(pool.state(c[0]), PageState::Cached);
  // A node touched by a pinned session through match() is protected as well.
  now = 300.0;
  tree.pin_session(9, 400.0);
  const auto d = insert({5, 5}, -1);
  pool.dec_ref_all(tree.match({4, 4, 0}, 9).pages);  // c: pinned now, and the newest
  EXPECT_EQ(tree.evict(1), 2);
  EXPECT_EQ(pool.state(d[0]), PageState::Free);
  tree.unpin_session(9);
  EXPECT_EQ(tree.evict(1), 2);
  EXPECT_EQ(pool.num_free(), 8);
}

TEST(PrefixTree, DisabledTreeCachesNothing) {
  PagePool pool(4);
  PrefixTree tree(pool, opts(1, false));
  auto p = compute(pool, 3, 1);
  EXPECT_EQ(tree.insert({1, 2, 3}, p), 0);
  pool.dec_ref_all(p);
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_EQ(tree.match({1, 2, 3}).num_tokens, 0);
  tree.check_invariants();
}

TEST(PrefixTree, DestructorGivesPagesBack) {
  PagePool pool(4);
  std::vector<int32_t> p;
  {
    PrefixTree tree(pool, opts(1));
    p = compute(pool, 3, 1);
    tree.insert({1, 2, 3}, p);
  }
  EXPECT_EQ(pool.num_cached(), 0);
  EXPECT_EQ(pool.refcount(p[0]), 1);  // the live request still holds its pages
  pool.dec_ref_all(p);
  EXPECT_EQ(pool.num_free(), 4);
  pool.check_invariants();
}

// ---- Property test ----

struct LiveReq {
  std::vector<int32_t> tokens;  // all computed (their K/V is in `pages`)
  std::vector<int32_t> pages;
  int num_matched = 0;
  int64_t session = -1;
};

class Sim {
 public:
  Sim(int ps, int num_pages, uint32_t seed)
      : ps_(ps), pool_(num_pages), rng_(seed), tree_(pool_, options(ps)) {
    tree_.pin_session(1, 1e18);
    content_.resize(num_pages);
  }

  void run(int num_ops) {
    for (int op = 0; op < num_ops; ++op) {
      const int r = rnd(0, 99);
      if (r < 25 || live_.empty()) {
        arrive();
      } else if (r < 65) {
        decode(rnd(0, int(live_.size()) - 1));
      } else if (r < 80) {
        finish(rnd(0, int(live_.size()) - 1), /*abort=*/false);
      } else if (r < 85) {
        finish(rnd(0, int(live_.size()) - 1), /*abort=*/true);
      } else if (r < 90) {
        insert_running(rnd(0, int(live_.size()) - 1));
      } else {
        evict(rnd(1, 8));
      }
      check();
      if (::testing::Test::HasFatalFailure()) return;
    }
    // The workload exercised what it is meant to.
    const PrefixTreeStats st = tree_.stats();
    EXPECT_GT(st.hit_tokens, 0);
    EXPECT_GT(st.deduplicated_pages, 0);
    EXPECT_GT(st.evicted_pages, 0);
    while (!live_.empty()) finish(0, rnd(0, 1) == 0);
    check();
    tree_.evict_all();
    EXPECT_EQ(pool_.num_free(), pool_.num_pages());
    EXPECT_EQ(tree_.stats().num_nodes, 0);
    pool_.check_invariants();
  }

 private:
  static PrefixTreeOptions options(int ps) {
    PrefixTreeOptions o;
    o.page_size = ps;
    o.policy = std::make_shared<PinnedSessionPolicy>();
    return o;
  }
  int rnd(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  std::vector<int32_t> random_tokens(int n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = rnd(0, 2);  // a tiny vocabulary: lots of accidental sharing
    return t;
  }

  // Simulated K/V: a page records the token prefix (up to its end) it was computed from.
  void write(LiveReq& q, int from) {
    for (int pos = from; pos < int(q.tokens.size()); ++pos) {
      const int32_t page = q.pages[pos / ps_];
      ASSERT_EQ(pool_.refcount(page), 1) << "write into a shared page";
      ASSERT_FALSE(pool_.held_by_cache(page)) << "write into a cached page";
      content_[page].assign(q.tokens.begin(), q.tokens.begin() + pos + 1);
    }
  }

  // Grows q's pages to hold n tokens; on failure the request is preempted (its computed full
  // pages go to the tree, as the scheduler does) and false is returned.
  bool grow(size_t idx, int n) {
    LiveReq& q = live_[idx];
    const int need = (n + ps_ - 1) / ps_ - int(q.pages.size());
    if (need <= 0 || pool_.allocate(need, q.pages)) return true;
    finish(idx, /*abort=*/false);
    return false;
  }

  void arrive() {
    std::vector<int32_t> prompt;
    const int kind = rnd(0, 3);
    if (kind == 0 && !history_.empty()) {  // follow-up: previous conversation + new message
      prompt = cat(history_[rnd(0, int(history_.size()) - 1)], random_tokens(rnd(1, 2 * ps_)));
    } else if (kind == 1) {  // a fixed system prompt + question
      prompt = cat(system_[rnd(0, 1)], random_tokens(rnd(1, 3 * ps_)));
    } else {
      prompt = random_tokens(rnd(1, 5 * ps_));
    }
    if (int(prompt.size()) > 12 * ps_) prompt.resize(12 * ps_);
    LiveReq q;
    q.session = rnd(0, 3) == 0 ? 1 : -1;
    const int peeked = tree_.peek(prompt);
    PrefixMatch m = tree_.match(prompt, q.session);
    ASSERT_EQ(m.num_tokens, peeked);
    ASSERT_EQ(m.num_tokens, int(m.pages.size()) * ps_);
    ASSERT_LT(m.num_tokens, int(prompt.size()));
    for (size_t i = 0; i < m.pages.size(); ++i) {
      // The cached page holds exactly this prompt's prefix up to its end.
      const std::vector<int32_t> want(prompt.begin(), prompt.begin() + (i + 1) * ps_);
      ASSERT_EQ(content_[m.pages[i]], want) << "stale page " << m.pages[i];
    }
    q.tokens = prompt;
    q.pages = m.pages;
    q.num_matched = m.num_tokens;
    live_.push_back(std::move(q));
    if (!grow(live_.size() - 1, int(prompt.size()))) return;
    write(live_.back(), m.num_tokens);
  }

  void decode(size_t idx) {
    const int n = rnd(1, 2 * ps_);
    const int from = int(live_[idx].tokens.size());
    if (!grow(idx, from + n)) return;
    auto more = random_tokens(n);
    live_[idx].tokens.insert(live_[idx].tokens.end(), more.begin(), more.end());
    write(live_[idx], from);
  }

  void insert_running(size_t idx) {
    LiveReq& q = live_[idx];
    tree_.insert(q.tokens, q.pages, q.session);
  }

  void finish(size_t idx, bool abort) {
    LiveReq q = std::move(live_[idx]);
    live_.erase(live_.begin() + int64_t(idx));
    if (!abort) {
      tree_.insert(q.tokens, q.pages, q.session);
      history_.push_back(q.tokens);
      if (history_.size() > 8) history_.erase(history_.begin());
    }
    pool_.dec_ref_all(q.pages);
  }

  void evict(int n) {
    std::vector<int32_t> referenced;
    for (const LiveReq& q : live_)
      for (int32_t p : q.pages)
        if (pool_.held_by_cache(p)) referenced.push_back(p);
    tree_.evict(n);
    for (int32_t p : referenced) ASSERT_TRUE(pool_.held_by_cache(p)) << "evicted page " << p;
  }

  void check() {
    std::vector<std::vector<int32_t>> lists;
    for (const LiveReq& q : live_) lists.push_back(q.pages);
    ASSERT_NO_THROW(tree_.check_invariants(&lists));
  }

  int ps_;
  PagePool pool_;
  std::mt19937 rng_;
  PrefixTree tree_;
  std::vector<LiveReq> live_;
  std::vector<std::vector<int32_t>> history_;
  std::vector<std::vector<int32_t>> content_;
  std::vector<std::vector<int32_t>> system_{random_tokens(2 * ps_ + 1), random_tokens(3 * ps_)};
};

class PrefixTreeProperty : public ::testing::TestWithParam<int> {};

TEST_P(PrefixTreeProperty, RandomWorkloadKeepsInvariants) {
  const int ps = GetParam();
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    Sim sim(ps, 48, seed * 7919 + ps);
    sim.run(600);
    if (HasFatalFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(PageSizes, PrefixTreeProperty, ::testing::Values(1, 2, 4));

}  // namespace
}  // namespace nc

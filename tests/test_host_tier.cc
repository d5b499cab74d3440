// The prefix cache's host tier (kv/host_tier.h) under a PrefixTree: the tier's own accounting,
// offload on eviction, restore on a hit (the queued copies carry the right contents), LRU across
// both tiers (the host drops its least recently used leaves when full), a hit the reload rule
// declines, an insert over a host node, and a random multi-turn workload under a small pool
// whose every matched page is checked to hold the K/V of its prefix, with the invariants after
// every operation.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>

#include "core/error.h"
#include "kv/host_tier.h"
#include "kv/prefix_tree.h"

namespace nc {
namespace {

TEST(HostTier, CountsEveryTransitionAndQueuesCopiesInOrder) {
  HostTier host(3, 100);
  EXPECT_EQ(host.offload(7), 0);
  EXPECT_EQ(host.offload(8), 1);
  EXPECT_EQ(host.offload(9), 2);
  EXPECT_EQ(host.offload(10), -1);  // full: nothing queued
  host.restore(1, 4);
  host.drop(0);
  host.check_invariants();
  EXPECT_EQ(host.num_held(), 1);
  const std::vector<KVPageCopy> q = host.take_copies();
  ASSERT_EQ(q.size(), 4u);
  EXPECT_TRUE(q[0].to_host && q[0].device_page == 7 && q[0].host_page == 0);
  EXPECT_TRUE(!q[3].to_host && q[3].device_page == 4 && q[3].host_page == 1);
  EXPECT_FALSE(host.has_copies());
  const HostTierCounters& c = host.counters();
  EXPECT_EQ(c.offloaded, 3);
  EXPECT_EQ(c.restored, 1);
  EXPECT_EQ(c.dropped, 1);
  EXPECT_EQ(c.bytes_to_host, 300);
  EXPECT_EQ(c.bytes_to_device, 100);
  EXPECT_THROW(host.restore(0, 1), Error);  // page 0 is free again
  EXPECT_THROW(host.drop(5), Error);
}

TEST(HostTier, SizeLargerThanTheMachineIsAClearError) {
  EXPECT_EQ(host_tier_pages(0, 64, 1 << 20), 0);
  EXPECT_EQ(host_tier_pages(1000, 64, 1 << 20), 15);
  try {
    host_tier_pages(int64_t(1) << 41, 64, int64_t(1) << 30);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("2199023255552"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("physical memory"), std::string::npos) << e.what();
  }
  EXPECT_THROW(host_tier_pages(10, 64, 1 << 20), Error);  // holds no page
}

// A pool, a host tier and a tree, with the contents of every device and host page simulated:
// a page holds the id of the token block (and its position) it was computed for, copies move
// contents exactly as the model's transfer_kv would.
struct World {
  int ps;
  PagePool pool;
  HostTier host;
  PrefixTree tree;
  std::vector<int64_t> dev, hst;

  World(int page_size, int device_pages, int host_pages, std::function<bool(int)> worth = nullptr)
      : ps(page_size),
        pool(device_pages),
        host(host_pages, 1),
        tree(pool, options(page_size, &host, std::move(worth))),
        dev(size_t(device_pages), -1),
        hst(size_t(host_pages), -1) {}

  static PrefixTreeOptions options(int ps, HostTier* h, std::function<bool(int)> worth) {
    PrefixTreeOptions o;
    o.page_size = ps;
    o.host = h;
    o.reload_worth = std::move(worth);
    return o;
  }
  // What a page computed for tokens[0, (i + 1) * ps) holds.
  static int64_t content(const std::vector<int32_t>& tokens, int i, int ps) {
    uint64_t h = 1469598103;                                          // unsigned: the hash wraps
    const int end = std::min<int>((i + 1) * ps, int(tokens.size()));  // a partial last page
    for (int k = 0; k < end; ++k) h = (h * 1000003) ^ uint64_t(uint32_t(tokens[size_t(k)]));
    return int64_t(h >> 1);
  }
  void flush() {
    for (const KVPageCopy& c : host.take_copies()) {
      if (c.to_host) {
        hst[size_t(c.host_page)] = dev[size_t(c.device_page)];
      } else {
        dev[size_t(c.device_page)] = hst[size_t(c.host_page)];
      }
    }
  }
  // A request over `tokens`: match, pages for the rest, copies, check the matched contents,
  // compute the rest, cache the full pages, finish. Returns the tokens matched.
  int run(const std::vector<int32_t>& tokens) {
    PrefixMatch m = tree.match(tokens);
    std::vector<int32_t> pages = m.pages;
    const int need = (int(tokens.size()) + ps - 1) / ps - int(pages.size());
    if (!pool.allocate(need, pages)) {
      flush();
      pool.dec_ref_all(pages);
      return -1;
    }
    flush();  // before the "forward pass" reads or writes any page
    for (size_t i = 0; i < m.pages.size(); ++i)
      EXPECT_EQ(dev[size_t(m.pages[i])], content(tokens, int(i), ps)) << "matched page " << i;
    for (size_t i = m.pages.size(); i < pages.size(); ++i)
      dev[size_t(pages[i])] = content(tokens, int(i), ps);
    tree.insert(tokens, pages);
    tree.check_invariants();
    pool.dec_ref_all(pages);
    tree.check_invariants();
    return m.num_tokens;
  }
};

std::vector<int32_t> tokens(int n, int base) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), base);
  return t;
}

TEST(HostTierTree, EvictedPagesGoToTheHostAndComeBackOnAHit) {
  World w(4, 6, 8);
  const auto a = tokens(17, 0), b = tokens(17, 1000);  // 4 full pages + 1 token each
  EXPECT_EQ(w.run(a), 0);
  EXPECT_EQ(w.pool.num_cached(), 4);
  EXPECT_EQ(w.run(b), 0);  // needs 5 pages: a's 4 cached pages go to the host
  EXPECT_EQ(w.host.num_held(), 4);
  EXPECT_EQ(w.tree.stats().host_pages, 4);
  EXPECT_EQ(w.pool.counters().evicted, 4);
  EXPECT_EQ(w.host.counters().offloaded, 4);
  // a again: its 4 pages come back from the host (b's go there), contents checked in run().
  EXPECT_EQ(w.run(a), 16);
  EXPECT_EQ(w.tree.stats().host_hit_tokens, 16);
  EXPECT_EQ(w.pool.counters().restored, 4);
  EXPECT_EQ(w.host.counters().restored, 4);
  EXPECT_EQ(w.pool.counters().reloaded, 4);  // the hit's references: Cached -> Used
  EXPECT_EQ(w.run(b), 16);                   // and b's come back too
  w.tree.check_invariants();
}

TEST(HostTierTree, FullHostDropsItsLeastRecentlyUsedLeaves) {
  World w(4, 5, 8);
  const auto a = tokens(17, 0), b = tokens(17, 1000), c = tokens(17, 2000);
  w.run(a);
  w.run(b);  // a -> host
  w.run(c);  // b -> host (host full: 8 pages)
  EXPECT_EQ(w.host.num_held(), 8);
  w.run(tokens(17, 3000));  // c -> host: a, the least recently used, is dropped
  EXPECT_EQ(w.host.counters().dropped, 4);
  EXPECT_EQ(w.run(a), 0);  // gone
  EXPECT_EQ(w.run(c), 16);
  w.tree.check_invariants();
}

TEST(HostTierTree, ADeclinedReloadIsAMissAndAnInsertTakesTheNodeBack) {
  World w(4, 6, 8, [](int) { return false; });
  const auto a = tokens(17, 0), b = tokens(17, 1000);
  w.run(a);
  w.run(b);  // a -> host
  EXPECT_EQ(w.tree.stats().host_pages, 4);
  EXPECT_EQ(w.run(a), 0);  // recomputed; insert gives a's host node the new device pages
  EXPECT_EQ(w.tree.stats().host_declined_tokens, 16);
  EXPECT_EQ(w.host.counters().restored, 0);
  EXPECT_GE(w.host.counters().dropped, 4);  // the superseded host copies
  EXPECT_EQ(w.run(a), 16);                  // now a device hit
  w.tree.check_invariants();
}

TEST(HostTierTree, AHostNodeTooBigForTheTierIsDroppedWithItsSubtree) {
  World w(4, 6, 2);
  const auto a = tokens(17, 0);
  w.run(a);
  w.run(tokens(17, 1000));  // a's 4-page node cannot fit 2 host pages: dropped
  EXPECT_EQ(w.host.num_held(), 0);
  EXPECT_EQ(w.tree.stats().host_pages, 0);
  EXPECT_EQ(w.run(a), 0);
  w.tree.check_invariants();
}

// Multi-turn conversations (each turn extends the last) over a pool that holds a few of them:
// hits come from both tiers, every matched page's content is right, invariants hold throughout.
TEST(HostTierTree, RandomMultiTurnWorkloadKeepsContentsAndInvariants) {
  for (int ps : {1, 4}) {
    for (int host_pages : {8, 40, 400}) {
      SCOPED_TRACE(testing::Message() << "page " << ps << " host " << host_pages);
      World w(ps, 48 / ps + 8, host_pages);
      std::mt19937 rng(7u + uint32_t(host_pages));
      std::vector<std::vector<int32_t>> convs(12);
      for (size_t i = 0; i < convs.size(); ++i) convs[i] = tokens(5, int32_t(i) * 100000);
      int64_t hits = 0;
      for (int step = 0; step < 300; ++step) {
        auto& c = convs[rng() % convs.size()];
        for (int k = 1 + int(rng() % 6); k > 0; --k) c.push_back(int32_t(rng() % 50000));
        if (int(c.size()) > 40) c.resize(5);  // a new conversation on the same system prompt
        const int got = w.run(c);
        if (got > 0) hits += got;
      }
      EXPECT_GT(hits, 0);
      const HostTierCounters& hc = w.host.counters();
      EXPECT_GT(hc.offloaded, 0);
      if (host_pages >= 40) {
        EXPECT_GT(hc.restored, 0);
      }
      EXPECT_EQ(w.pool.counters().restored, hc.restored);
      w.tree.check_invariants();
    }
  }
}

}  // namespace
}  // namespace nc

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "backend/backend.h"
#include "core/error.h"
#include "kv/page_pool.h"

namespace nc {

TEST(PagePool, AllocateUntilExhaustedThenFree) {
  PagePool pool(8);
  pool.check_invariants();
  std::set<int32_t> got;
  for (int i = 0; i < 8; ++i) {
    const int32_t p = pool.allocate();
    ASSERT_GE(p, 0);
    EXPECT_TRUE(got.insert(p).second) << "page " << p << " handed out twice";
    EXPECT_EQ(pool.refcount(p), 1);
    EXPECT_EQ(pool.state(p), PageState::Used);
    pool.check_invariants();
  }
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_EQ(pool.num_used(), 8);
  EXPECT_EQ(pool.allocate(), -1);  // exhausted: no page, no crash
  std::vector<int32_t> out;
  EXPECT_FALSE(pool.allocate(1, out));
  EXPECT_TRUE(out.empty());
  for (int32_t p : got) pool.dec_ref(p);
  EXPECT_EQ(pool.num_free(), 8);
  EXPECT_EQ(pool.num_used(), 0);
  pool.check_invariants();
}

TEST(PagePool, BulkAllocationIsAllOrNothing) {
  PagePool pool(5);
  std::vector<int32_t> a;
  ASSERT_TRUE(pool.allocate(3, a));
  EXPECT_EQ(a.size(), 3u);
  std::vector<int32_t> b = {42};
  EXPECT_FALSE(pool.allocate(3, b));
  EXPECT_EQ(b, std::vector<int32_t>{42});  // untouched
  EXPECT_EQ(pool.num_free(), 2);
  ASSERT_TRUE(pool.allocate(2, a));
  EXPECT_EQ(pool.num_free(), 0);
  pool.dec_ref_all(a);
  pool.check_invariants();
  EXPECT_EQ(pool.num_free(), 5);
}

TEST(PagePool, FreedPageIsReusedFirst) {
  PagePool pool(4);
  const int32_t a = pool.allocate();
  const int32_t b = pool.allocate();
  pool.dec_ref(a);
  EXPECT_EQ(pool.allocate(), a);
  pool.dec_ref(b);
  pool.dec_ref(a);
  pool.check_invariants();
}

TEST(PagePool, RefcountsKeepSharedPagesAlive) {
  PagePool pool(3);
  const int32_t p = pool.allocate();
  pool.inc_ref(p);
  pool.inc_ref(p);
  EXPECT_EQ(pool.refcount(p), 3);
  pool.dec_ref(p);
  pool.dec_ref(p);
  EXPECT_EQ(pool.state(p), PageState::Used);
  EXPECT_EQ(pool.num_free(), 2);
  pool.dec_ref(p);
  EXPECT_EQ(pool.state(p), PageState::Free);
  EXPECT_EQ(pool.num_free(), 3);
  pool.check_invariants();
}

TEST(PagePool, MisuseThrows) {
  PagePool pool(2);
  EXPECT_THROW(PagePool(0), Error);
  EXPECT_THROW(pool.dec_ref(0), Error);  // refcount 0
  EXPECT_THROW(pool.inc_ref(1), Error);  // free page
  EXPECT_THROW(pool.dec_ref(7), Error);  // out of range
  EXPECT_THROW(pool.refcount(-1), Error);
  EXPECT_THROW(pool.uncache(0), Error);     // not cached
  EXPECT_THROW(pool.set_cached(0), Error);  // not used
  pool.check_invariants();
}

TEST(PagePool, CachedPagesAndEviction) {
  PagePool pool(3);
  std::vector<int32_t> pages;
  ASSERT_TRUE(pool.allocate(3, pages));
  // The prefix cache holds pages 0 and 1; the requests let go of everything.
  pool.set_cached(pages[0]);
  pool.set_cached(pages[1]);
  pool.dec_ref_all(pages);
  pool.check_invariants();
  EXPECT_EQ(pool.num_cached(), 2);
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_EQ(pool.state(pages[0]), PageState::Cached);
  // A new request reuses cached page 0 (Cached -> Used).
  pool.inc_ref(pages[0]);
  EXPECT_EQ(pool.state(pages[0]), PageState::Used);
  EXPECT_EQ(pool.num_cached(), 1);
  pool.check_invariants();
  // Without an evictor cached pages are not available.
  EXPECT_EQ(pool.num_available(), 1);
  std::vector<int32_t> more;
  EXPECT_FALSE(pool.allocate(2, more));
  // With one, allocation asks it to release cached pages.
  int asked = 0;
  pool.set_evictor([&](int needed) {
    asked = needed;
    pool.uncache(pages[1]);
    return 1;
  });
  EXPECT_EQ(pool.num_available(), 2);
  ASSERT_TRUE(pool.allocate(2, more));
  EXPECT_EQ(asked, 1);
  EXPECT_EQ(pool.num_cached(), 0);
  pool.check_invariants();
  // A used page the cache holds becomes Cached, not Free, at refcount 0; uncache frees it.
  pool.dec_ref(pages[0]);
  EXPECT_EQ(pool.state(pages[0]), PageState::Cached);
  pool.uncache(pages[0]);
  EXPECT_EQ(pool.state(pages[0]), PageState::Free);
  pool.dec_ref_all(more);
  pool.check_invariants();
  EXPECT_EQ(pool.num_free(), 3);
}

TEST(PagePool, RandomOperationsKeepInvariants) {
  PagePool pool(64);
  std::mt19937 rng(7);
  std::vector<int32_t> held;  // one entry per reference
  for (int i = 0; i < 5000; ++i) {
    const int op = int(rng() % 3);
    if (op == 0) {
      const int32_t p = pool.allocate();
      if (p >= 0)
        held.push_back(p);
      else
        EXPECT_EQ(pool.num_free(), 0);
    } else if (op == 1 && !held.empty()) {
      const int32_t p = held[rng() % held.size()];
      pool.inc_ref(p);
      held.push_back(p);
    } else if (!held.empty()) {
      const size_t k = rng() % held.size();
      pool.dec_ref(held[k]);
      held.erase(held.begin() + k);
    }
    if (i % 97 == 0) pool.check_invariants();
  }
  for (int32_t p : held) pool.dec_ref(p);
  pool.check_invariants();
  EXPECT_EQ(pool.num_free(), 64);
}

TEST(MemoryBudget, ParsesBytesAndFractions) {
  EXPECT_EQ(parse_memory_budget("2GiB").bytes, int64_t(2) << 30);
  EXPECT_EQ(parse_memory_budget("2 gib").bytes, int64_t(2) << 30);
  EXPECT_EQ(parse_memory_budget("512MB").bytes, int64_t(512000000));
  EXPECT_EQ(parse_memory_budget("512MiB").bytes, int64_t(512) << 20);
  EXPECT_EQ(parse_memory_budget("1.5GiB").bytes, int64_t(3) << 29);
  EXPECT_EQ(parse_memory_budget("4K").bytes, 4000);
  EXPECT_EQ(parse_memory_budget("1048576").bytes, 1048576);
  EXPECT_FALSE(parse_memory_budget("1048576").is_fraction);
  const MemoryBudget f = parse_memory_budget("0.9");
  EXPECT_TRUE(f.is_fraction);
  EXPECT_DOUBLE_EQ(f.fraction, 0.9);
  EXPECT_EQ(f.resolve(1000), 900);
  EXPECT_EQ(parse_memory_budget("1.0").fraction, 1.0);
  for (const char* bad : {"", "abc", "1.5", "0.0", "0", "2XB", "-1", "GiB", "1..2"}) {
    EXPECT_THROW(parse_memory_budget(bad), Error) << bad;
  }
}

TEST(MemoryBudget, PagesForBudget) {
  EXPECT_EQ(pages_for_budget(1000, 100), 10);
  EXPECT_EQ(pages_for_budget(1099, 100), 10);
  EXPECT_THROW(pages_for_budget(99, 100), Error);
  EXPECT_GT(physical_memory_bytes(), int64_t(1) << 20);
  // The CPU backend offers the machine's physical memory (Backend::free_memory_bytes).
  EXPECT_EQ(make_cpu_backend()->free_memory_bytes(), physical_memory_bytes());
}

}  // namespace nc

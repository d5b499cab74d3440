// PageBounds (kv/page_bounds.h): after random steps of appends written by cpu_append_kv (decode
// rows and prefill chunks, both layouts, page sizes 1, 3 and 16), with requests preempted and
// their pages reused, prefix-cache hits that start a request on another's full pages, and the
// same appends given as a cascade own level (shared pages left out), every page's min/max equals
// a brute-force min/max over the K slots written in the page tensor; rebuild() recomputes a page
// from its contents; the score bound is >= every q.k of the page (summed in the same order) and
// equals it on a one-slot page; bad shapes are rejected.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <random>
#include <vector>

#include "backend/cpu/cpu_attention.h"
#include "core/error.h"
#include "kv/page_bounds.h"

namespace nc {
namespace {

struct Req {
  std::vector<int32_t> pages;
  int kv_len = 0;
  int shared_pages = 0;  // leading pages reached through a prefix-cache hit (full, not owned)
};

struct Sim {
  KVCacheShape kv;
  std::vector<float> pool;
  PageBounds bounds;
  std::vector<int32_t> free_pages;
  std::vector<int> valid;  // written slots per page (what the brute force covers)
  std::vector<Req> live;
  std::mt19937 rng{7};

  Sim(int page_size, KVLayout layout) {
    kv = KVCacheShape{1, 64, page_size, 2, 8, layout};
    pool.assign(size_t(kv.num_pages * kv.elems_per_page()), 0.0f);
    bounds = PageBounds(kv.num_pages, kv.num_kv_heads, kv.head_dim);
    for (int p = kv.num_pages - 1; p >= 0; --p) free_pages.push_back(p);
    valid.assign(size_t(kv.num_pages), 0);
    // Stale garbage in every page: a reused page must not keep bounds of old contents.
    std::normal_distribution<float> n(0, 5);
    for (float& x : pool) x = n(rng);
  }

  int pages_free() const { return int(free_pages.size()); }

  // One step: each request appends q_len rows; cascade: the batch leaves shared pages out.
  void step(const std::vector<int>& q_lens, bool cascade) {
    PagedKVBatch batch;
    for (size_t r = 0; r < live.size(); ++r) {
      Req& q = live[r];
      q.kv_len += q_lens[r];
      while (int(q.pages.size()) * kv.page_size < q.kv_len) {
        q.pages.push_back(free_pages.back());
        free_pages.pop_back();
      }
      const int skip = cascade ? q.shared_pages : 0;
      std::vector<int32_t> own(q.pages.begin() + skip, q.pages.end());
      batch.add(q_lens[r], own, q.kv_len - skip * kv.page_size, kv.page_size);
      for (int i = q.kv_len - q_lens[r]; i < q.kv_len; ++i) {
        const int p = q.pages[size_t(i / kv.page_size)];
        valid[size_t(p)] = std::max(valid[size_t(p)], i % kv.page_size + 1);
      }
    }
    const int T = batch.qo_indptr.back(), row = kv.num_kv_heads * kv.head_dim;
    std::vector<float> k(size_t(T * row)), v(size_t(T * row));
    std::normal_distribution<float> n(0, 1);
    for (float& x : k) x = n(rng);
    for (float& x : v) x = n(rng);
    cpu_append_kv(batch, kv, k.data(), v.data(), pool.data());
    bounds.append(batch, kv, k.data());
  }

  // Frees request r's own pages (shared ones stay with their owner); they keep stale contents.
  void preempt(size_t r) {
    Req& q = live[r];
    for (size_t i = size_t(q.shared_pages); i < q.pages.size(); ++i) {
      free_pages.push_back(q.pages[i]);
      valid[size_t(q.pages[i])] = 0;
    }
    live.erase(live.begin() + long(r));
  }

  void expect_exact(const char* when) const {
    for (const Req& q : live)
      for (int32_t p : q.pages) {
        const float* base = pool.data() + int64_t(p) * kv.elems_per_page();
        for (int h = 0; h < kv.num_kv_heads; ++h)
          for (int d = 0; d < kv.head_dim; ++d) {
            float lo = std::numeric_limits<float>::infinity(), hi = -lo;
            for (int s = 0; s < valid[size_t(p)]; ++s) {
              lo = std::min(lo, base[kv.offset_in_page(0, s, h) + d]);
              hi = std::max(hi, base[kv.offset_in_page(0, s, h) + d]);
            }
            ASSERT_EQ(bounds.min(p)[h * kv.head_dim + d], lo) << when << " page " << p;
            ASSERT_EQ(bounds.max(p)[h * kv.head_dim + d], hi) << when << " page " << p;
          }
      }
  }
};

TEST(PageBounds, ExactThroughAppendsPreemptionPrefixHitsAndCascade) {
  for (int ps : {1, 3, 16})
    for (KVLayout layout : {KVLayout::NHD, KVLayout::HND}) {
      Sim sim(ps, layout);
      std::uniform_int_distribution<int> chunk(1, 9), coin(0, 3);
      int hits = 0, preempted = 0;
      for (int it = 0; it < 200; ++it) {
        if (sim.live.size() < 3) {
          Req r;
          // Prefix-cache hit: start on the full pages of a live request.
          if (!sim.live.empty() && coin(sim.rng) < 2) {
            const Req& donor = sim.live.front();
            r.shared_pages = donor.kv_len / ps;
            r.pages.assign(donor.pages.begin(), donor.pages.begin() + r.shared_pages);
            r.kv_len = r.shared_pages * ps;
            hits += r.shared_pages > 0;
          }
          sim.live.push_back(r);
        }
        std::vector<int> q_lens;
        int need = 0;
        for (const Req& r : sim.live) {
          q_lens.push_back(coin(sim.rng) ? 1 : chunk(sim.rng));
          need += (r.kv_len + q_lens.back() + ps - 1) / ps - int(r.pages.size());
        }
        // Preempt (or finish) the newest (no live request shares its own pages) when the pool
        // runs short, and now and then anyway.
        if (need > sim.pages_free() || it % 8 == 7) {
          sim.preempt(sim.live.size() - 1);
          ++preempted;
          continue;
        }
        sim.step(q_lens, it % 2 == 1);
        sim.expect_exact("step");
        if (HasFatalFailure()) return;
      }
      // The scenario reached what it is about.
      EXPECT_GT(hits, 0) << "page size " << ps;
      EXPECT_GT(preempted, 0) << "page size " << ps;
    }
}

TEST(PageBounds, RebuildRecomputesFromContents) {
  Sim sim(16, KVLayout::HND);
  sim.live.push_back({{5, 9}, 21, 0});
  sim.valid[5] = 16;
  sim.valid[9] = 5;
  sim.bounds.rebuild(5, sim.pool.data(), sim.kv, 16);
  sim.bounds.rebuild(9, sim.pool.data(), sim.kv, 5);
  sim.expect_exact("rebuild");
  sim.bounds.rebuild(9, sim.pool.data(), sim.kv, 0);
  EXPECT_GT(sim.bounds.min(9)[0], sim.bounds.max(9)[0]);  // empty
  EXPECT_THROW(sim.bounds.rebuild(9, sim.pool.data(), sim.kv, 17), Error);
}

TEST(PageBounds, UpperBoundCoversEveryKeyAndIsTightOnOneSlot) {
  const int Hk = 2, D = 32, group = 3, ps = 8;
  const KVCacheShape kv{1, 4, ps, Hk, D, KVLayout::NHD};
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0, 2);
  std::vector<float> pool(size_t(kv.num_pages * kv.elems_per_page()));
  for (float& x : pool) x = n(rng);
  PageBounds b(kv.num_pages, Hk, D);
  for (int p = 0; p < kv.num_pages; ++p) b.rebuild(p, pool.data(), kv, p == 3 ? 1 : ps);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> q(size_t(group * D));
    for (float& x : q) x = n(rng);
    for (int p = 0; p < kv.num_pages; ++p)
      for (int h = 0; h < Hk; ++h) {
        const float ub = b.upper_bound(p, h, q.data(), group);
        float best = -std::numeric_limits<float>::infinity();
        for (int s = 0; s < (p == 3 ? 1 : ps); ++s)
          for (int g = 0; g < group; ++g) {
            const float* k = pool.data() + p * kv.elems_per_page() + kv.offset_in_page(0, s, h);
            float dot = 0;
            for (int d = 0; d < D; ++d) dot += q[size_t(g * D + d)] * k[d];
            ASSERT_GE(ub, dot) << "page " << p << " head " << h << " slot " << s;
            best = std::max(best, dot);
          }
        if (p == 3) {
          EXPECT_EQ(ub, best);  // one key: min = max = k
        }
      }
  }
  PageBounds empty(1, 1, 4);
  const float q[4] = {0, 1, -1, 0};
  EXPECT_EQ(empty.upper_bound(0, 0, q, 1), -std::numeric_limits<float>::infinity());
}

TEST(PageBounds, RejectsBadShapes) {
  EXPECT_THROW(PageBounds(0, 1, 1), Error);
  PageBounds b(2, 2, 4);
  const KVCacheShape other{1, 2, 4, 1, 4, KVLayout::NHD};
  PagedKVBatch batch;
  batch.add(1, {0}, 1, 4);
  std::vector<float> k(8);
  EXPECT_THROW(b.append(batch, other, k.data()), Error);
  EXPECT_THROW(b.fold(2, k.data()), Error);
  EXPECT_THROW(b.upper_bound(0, 2, k.data(), 1), Error);
}

}  // namespace
}  // namespace nc

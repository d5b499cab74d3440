// The Hopper prefill's work schedule (backend/sm90_schedule.h), checked on the host: every
// (entry, query tile, head) is covered once over exactly its whole KV, split chunks tile the KV
// without overlap, the gather and merge maps send every partial back to its row, the longest-first
// assignment keeps CTAs within one work of each other, and the laid-out arrays say the same as
// the schedule. The GPU test (CudaAttentionSm90) checks the kernel's numbers against the CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "backend/sm90_schedule.h"
#include "core/error.h"

namespace nc {
namespace {

// A level's CSR arrays and the view the planner takes.
struct LevelArrays {
  std::vector<int32_t> qo_indptr{0}, kv_indptr{0}, last_page_len;
  int heads = 4, head_dim = 128, page_size = 16;

  void add(int rows, int kv_len) {
    qo_indptr.push_back(qo_indptr.back() + rows);
    const int pages = (kv_len + page_size - 1) / page_size;
    kv_indptr.push_back(kv_indptr.back() + pages);
    last_page_len.push_back(pages == 0 ? 0 : kv_len - (pages - 1) * page_size);
  }
  int kv_len(int b) const {
    const int pages = kv_indptr[size_t(b) + 1] - kv_indptr[size_t(b)];
    return pages == 0 ? 0 : (pages - 1) * page_size + last_page_len[size_t(b)];
  }
  Sm90Level level() const {
    Sm90Level l;
    l.qo_indptr = qo_indptr.data();
    l.kv_indptr = kv_indptr.data();
    l.kv_last_page_len = last_page_len.data();
    l.batch_size = int(last_page_len.size());
    l.total_rows = qo_indptr.back();
    l.num_qo_heads = heads;
    l.head_dim = head_dim;
    l.page_size = page_size;
    return l;
  }
};

// A KV token range [begin, end) of an entry.
using Range = std::pair<int, int>;

// Replays the schedule as the kernel and the merge would: for every output (row, head), the KV
// ranges its partials read, in entry tokens. Fails the test where a work reads outside its entry
// or a replica row maps to another entry.
std::map<std::pair<int, int>, std::vector<Range>> ranges_read(const LevelArrays& a,
                                                              const Sm90Schedule& s) {
  const int tile = sm90_query_tile(a.head_dim);
  std::map<std::pair<int, int>, std::vector<Range>> out;
  for (const auto& cta : s.per_cta) {
    for (const Sm90Work& w : cta) {
      const int b = w.batch;
      const int page0 = w.kv_indptr - a.kv_indptr[size_t(b)];
      EXPECT_GE(page0, 0);
      const int begin = page0 * a.page_size;
      EXPECT_LE(begin + w.kv_len, a.kv_len(b)) << "work reads past entry " << b;
      for (int i = w.qo_tile * tile; i < std::min(w.qo_len, (w.qo_tile + 1) * tile); ++i) {
        const int row = w.qo_indptr + i;
        const int target = s.chunk_pages > 0 ? s.gather_src[size_t(row)] : row;
        EXPECT_GE(target, a.qo_indptr[size_t(b)]);
        EXPECT_LT(target, a.qo_indptr[size_t(b) + 1]);
        out[{target, w.head}].push_back({begin, begin + w.kv_len});
      }
    }
  }
  return out;
}

// Every row and head of every entry reads its entry's KV exactly once: sorted ranges tile
// [0, kv_len) (an empty entry: one empty read, so the kernel writes its zero output).
void expect_exact_cover(const LevelArrays& a, const Sm90Schedule& s) {
  auto reads = ranges_read(a, s);
  for (int b = 0; b + 1 < int(a.qo_indptr.size()); ++b) {
    for (int r = a.qo_indptr[size_t(b)]; r < a.qo_indptr[size_t(b) + 1]; ++r) {
      for (int h = 0; h < a.heads; ++h) {
        std::vector<Range> rs = reads[{r, h}];
        ASSERT_FALSE(rs.empty()) << "row " << r << " head " << h << " never computed";
        std::sort(rs.begin(), rs.end());
        int at = 0;
        for (const Range& x : rs) {
          EXPECT_EQ(x.first, at) << "row " << r << " head " << h << ": gap or overlap";
          at = x.second;
        }
        EXPECT_EQ(at, a.kv_len(b)) << "row " << r << " head " << h;
      }
    }
  }
}

// The merge maps name, for each output row, exactly the replica rows gathered from it.
void expect_merge_maps(const LevelArrays& a, const Sm90Schedule& s) {
  ASSERT_GT(s.chunk_pages, 0);
  ASSERT_EQ(int(s.gather_src.size()), s.rep_rows);
  std::vector<int> seen(size_t(s.rep_rows), 0);
  for (int t = 0; t < a.qo_indptr.back(); ++t) {
    for (int c = 0; c < s.merge_count[size_t(t)]; ++c) {
      const int r = s.merge_first[size_t(t)] + c * s.merge_stride[size_t(t)];
      ASSERT_LT(r, s.rep_rows);
      EXPECT_EQ(s.gather_src[size_t(r)], t);
      ++seen[size_t(r)];
    }
  }
  for (int r = 0; r < s.rep_rows; ++r) EXPECT_EQ(seen[size_t(r)], 1) << "replica row " << r;
}

LevelArrays random_level(std::mt19937& rng, int entries) {
  LevelArrays a;
  std::uniform_int_distribution<int> rows(0, 300), kv(0, 3000);
  for (int b = 0; b < entries; ++b) a.add(rows(rng), kv(rng));
  return a;
}

TEST(Sm90Schedule, EveryRowReadsItsWholeKvOnceUnsplitAndSplit) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 6; ++trial) {
    LevelArrays a = random_level(rng, 1 + trial);
    a.head_dim = trial % 2 == 0 ? 128 : 64;
    for (int chunk : {0, 1, 3, 16, 1000}) {
      SCOPED_TRACE(::testing::Message() << "trial " << trial << " chunk " << chunk);
      const Sm90Schedule s = make_sm90_schedule(a.level(), 132, chunk);
      EXPECT_EQ(s.chunk_pages, chunk);
      expect_exact_cover(a, s);
      if (chunk > 0) expect_merge_maps(a, s);
    }
  }
}

TEST(Sm90Schedule, SplitsOneLongSharedEntryAndNotAFullLevel) {
  LevelArrays one;  // 1 entry of 128 rows x 32 heads over 32k tokens: 32 works for 132 CTAs
  one.heads = 32;
  one.add(128, 32768);
  const Sm90Schedule s = make_sm90_schedule(one.level(), 132);
  EXPECT_GT(s.chunk_pages, 0);
  EXPECT_LT(s.chunk_pages, 32768 / 16);
  expect_exact_cover(one, s);
  expect_merge_maps(one, s);

  LevelArrays many;  // 64 entries x 2 tiles x 32 heads: 4096 works already fill 132 CTAs
  many.heads = 32;
  for (int b = 0; b < 64; ++b) many.add(256, 4096);
  EXPECT_EQ(make_sm90_schedule(many.level(), 132).chunk_pages, 0);

  LevelArrays short_kv;  // one page of KV: nothing to split
  short_kv.add(128, 10);
  EXPECT_EQ(make_sm90_schedule(short_kv.level(), 132).chunk_pages, 0);
}

TEST(Sm90Schedule, LongestFirstKeepsCtasWithinOneWork) {
  std::mt19937 rng(11);
  const LevelArrays a = random_level(rng, 9);
  for (int chunk : {0, 8}) {
    const Sm90Schedule s = make_sm90_schedule(a.level(), 20, chunk);
    int64_t lo = INT64_MAX, hi = 0, biggest = 0;
    for (const auto& cta : s.per_cta) {
      int64_t load = 0;
      for (const Sm90Work& w : cta) load += w.cost, biggest = std::max(biggest, w.cost);
      lo = std::min(lo, load);
      hi = std::max(hi, load);
    }
    EXPECT_LE(hi - lo, biggest) << "chunk " << chunk;
  }
}

TEST(Sm90Schedule, EmptyEntriesGetOneZeroLengthWorkAndRowlessOnesNone) {
  LevelArrays a;
  a.add(5, 0);    // rows, no KV: written as zero output by one work per head
  a.add(0, 400);  // KV, no rows: nothing to compute
  a.add(3, 40);
  const Sm90Schedule s = make_sm90_schedule(a.level(), 8, 1);
  int empty = 0;
  for (const auto& cta : s.per_cta) {
    for (const Sm90Work& w : cta) {
      EXPECT_NE(w.batch, 1);
      if (w.batch == 0) {
        EXPECT_EQ(w.kv_len, 0);
        ++empty;
      }
    }
  }
  EXPECT_EQ(empty, a.heads);
  expect_exact_cover(a, s);
  expect_merge_maps(a, s);
}

TEST(Sm90Schedule, LayoutHoldsTheScheduleAtAlignedDisjointOffsets) {
  std::mt19937 rng(3);
  const LevelArrays a = random_level(rng, 4);
  for (int chunk : {0, 5}) {
    const Sm90Schedule s = make_sm90_schedule(a.level(), 16, chunk);
    std::vector<int64_t> info;
    const size_t bytes = layout_sm90_schedule(s, a.level(), &info, nullptr);
    ASSERT_EQ(int(info.size()), kSm90NumFields);
    std::vector<char> buf(bytes);
    std::vector<int64_t> again;
    EXPECT_EQ(layout_sm90_schedule(s, a.level(), &again, buf.data()), bytes);
    EXPECT_EQ(again, info);
    EXPECT_EQ(info[kSm90Split], chunk > 0);
    EXPECT_EQ(info[kSm90Rows], a.qo_indptr.back());
    for (int f = kSm90OffQoTile; f < kSm90NumFields; ++f) {
      EXPECT_EQ(info[size_t(f)] % 16, 0) << "field " << f;
      if (f + 1 < kSm90NumFields) {
        EXPECT_LT(info[size_t(f)], info[size_t(f) + 1]);
      }
      EXPECT_LT(size_t(info[size_t(f)]), bytes);
    }
    auto arr = [&](Sm90PlanField f) {
      return reinterpret_cast<const int32_t*>(buf.data() + info[f]);
    };
    const int32_t* indptr = arr(kSm90OffWorkIndptr);
    EXPECT_EQ(indptr[0], 0);
    size_t i = 0;
    for (size_t c = 0; c < s.per_cta.size(); ++c) {
      for (const Sm90Work& w : s.per_cta[c]) {
        EXPECT_EQ(std::tie(arr(kSm90OffQoTile)[i], arr(kSm90OffKvLen)[i], arr(kSm90OffHead)[i],
                           arr(kSm90OffBatch)[i]),
                  std::tie(w.qo_tile, w.kv_len, w.head, w.batch));
        ++i;
      }
      EXPECT_EQ(indptr[c + 1], int32_t(i));
    }
    EXPECT_EQ(info[kSm90Works], int64_t(i));
    if (chunk > 0) {
      EXPECT_TRUE(std::equal(s.gather_src.begin(), s.gather_src.end(), arr(kSm90OffGather)));
    }
  }
}

TEST(Sm90Schedule, RefusesALevelWithoutLastPageLengthsOrCtas) {
  LevelArrays a;
  a.add(4, 40);
  Sm90Level l = a.level();
  EXPECT_THROW(make_sm90_schedule(l, 0), Error);
  l.kv_last_page_len = nullptr;
  EXPECT_THROW(make_sm90_schedule(l, 8), Error);
}

}  // namespace
}  // namespace nc

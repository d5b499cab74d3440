// Paged attention on the CPU against a dense reference computed from contiguous K/V, over random
// CSR batches that mix prefills and decodes, for several page sizes and both layouts; and
// cascade levels merged by attention-state merge against the same attention in one level.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "backend/backend.h"
#include "backend/cpu/cpu_attention.h"
#include "core/thread_pool.h"

namespace nc {
namespace {

struct Seq {
  int q_len, kv_len;           // kv_len includes the q_len new tokens
  std::vector<int32_t> pages;  // physical page ids
  std::vector<float> k, v;     // dense [kv_len, Hk, D]
};

struct Case {
  AttentionShape shape;
  std::vector<Seq> seqs;
  std::vector<float> pages;  // the paged pool
  std::vector<float> q;      // [T, Hq, D]
  int T = 0;
};

Case make_case(std::mt19937& rng, int page_size, KVLayout layout, int batch, int D = 16) {
  Case c;
  const int Hq = 4, Hk = 2;
  std::uniform_int_distribution<int> q_len_dist(1, 9), prefix_dist(0, 40), coin(0, 1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int total_pages = 0;
  for (int b = 0; b < batch; ++b) {
    Seq s;
    s.q_len = coin(rng) ? 1 : q_len_dist(rng);  // decode or prefill chunk
    s.kv_len = s.q_len + prefix_dist(rng);
    const int n = (s.kv_len + page_size - 1) / page_size;
    for (int p = 0; p < n; ++p) s.pages.push_back(total_pages++);
    c.seqs.push_back(std::move(s));
    c.T += c.seqs.back().q_len;
  }
  // Shuffle physical page ids so that pages of one sequence are scattered in the pool.
  std::vector<int32_t> perm(total_pages);
  for (int i = 0; i < total_pages; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  for (Seq& s : c.seqs)
    for (int32_t& p : s.pages) p = perm[p];
  c.shape = AttentionShape{Hq, Hk, D, 1.0f / std::sqrt(float(D)),
                           KVCacheShape{1, total_pages, page_size, Hk, D, layout}};
  c.pages.assign(size_t(total_pages) * c.shape.kv.elems_per_page(), std::nanf(""));
  for (Seq& s : c.seqs) {
    s.k.resize(size_t(s.kv_len) * Hk * D);
    s.v.resize(s.k.size());
    for (float& x : s.k) x = normal(rng);
    for (float& x : s.v) x = normal(rng);
  }
  c.q.resize(size_t(c.T) * Hq * D);
  for (float& x : c.q) x = normal(rng);
  return c;
}

// Writes the first `upto` tokens of each sequence into its pages directly (the cached prefix).
void fill_prefix(Case& c) {
  const KVCacheShape& kv = c.shape.kv;
  for (Seq& s : c.seqs)
    for (int t = 0; t < s.kv_len - s.q_len; ++t)
      for (int h = 0; h < kv.num_kv_heads; ++h)
        for (int kvi = 0; kvi < 2; ++kvi) {
          const float* src =
              (kvi == 0 ? s.k : s.v).data() + (size_t(t) * kv.num_kv_heads + h) * kv.head_dim;
          float* dst = c.pages.data() + s.pages[t / kv.page_size] * kv.elems_per_page() +
                       kv.offset_in_page(kvi, t % kv.page_size, h);
          std::copy_n(src, kv.head_dim, dst);
        }
}

// Dense causal attention for every query row: out [T, Hq, D], lse [T, Hq] (base 2).
void reference(const Case& c, std::vector<float>& out, std::vector<float>& lse) {
  const int Hq = c.shape.num_qo_heads, Hk = c.shape.num_kv_heads, D = c.shape.head_dim;
  out.assign(size_t(c.T) * Hq * D, 0.0f);
  lse.assign(size_t(c.T) * Hq, 0.0f);
  int row = 0;
  for (const Seq& s : c.seqs) {
    for (int j = 0; j < s.q_len; ++j, ++row) {
      const int visible = s.kv_len - s.q_len + j + 1;
      for (int h = 0; h < Hq; ++h) {
        const int kh = h / (Hq / Hk);
        std::vector<double> sc(visible);
        double mx = -1e300;
        for (int t = 0; t < visible; ++t) {
          double dot = 0;
          for (int d = 0; d < D; ++d)
            dot += double(c.q[(size_t(row) * Hq + h) * D + d]) * s.k[(size_t(t) * Hk + kh) * D + d];
          sc[t] = dot * c.shape.sm_scale;
          mx = std::max(mx, sc[t]);
        }
        double sum = 0;
        for (double& x : sc) sum += (x = std::exp(x - mx));
        for (int t = 0; t < visible; ++t)
          for (int d = 0; d < D; ++d)
            out[(size_t(row) * Hq + h) * D + d] +=
                float(sc[t] / sum * s.v[(size_t(t) * Hk + kh) * D + d]);
        lse[size_t(row) * Hq + h] = float((mx + std::log(sum)) / std::log(2.0));
      }
    }
  }
}

PagedKVBatch full_batch(const Case& c) {
  PagedKVBatch b;
  for (const Seq& s : c.seqs) b.add(s.q_len, s.pages, s.kv_len, c.shape.kv.page_size);
  return b;
}

// New tokens' K/V rows [T, Hk*D], in batch order.
void new_kv_rows(const Case& c, std::vector<float>& k, std::vector<float>& v) {
  const size_t w = size_t(c.shape.num_kv_heads) * c.shape.head_dim;
  for (const Seq& s : c.seqs) {
    const size_t first = size_t(s.kv_len - s.q_len) * w;
    k.insert(k.end(), s.k.begin() + first, s.k.end());
    v.insert(v.end(), s.v.begin() + first, s.v.end());
  }
}

double max_rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

class PagedAttention : public ::testing::TestWithParam<std::tuple<int, KVLayout>> {};

TEST_P(PagedAttention, AppendsAndMatchesDenseReference) {
  const auto [page_size, layout] = GetParam();
  std::mt19937 rng(1234 + page_size);
  for (int trial = 0; trial < 4; ++trial) {
    Case c = make_case(rng, page_size, layout, 1 + trial * 3);
    fill_prefix(c);
    PagedKVBatch batch = full_batch(c);
    batch.validate(c.T, page_size, c.shape.kv.num_pages);
    std::vector<float> k, v, out(c.q.size(), std::nanf("")), lse(size_t(c.T) * 4, std::nanf(""));
    new_kv_rows(c, k, v);
    cpu_append_kv(batch, c.shape.kv, k.data(), v.data(), c.pages.data());
    cpu_paged_attention(batch, c.shape, c.q.data(), c.pages.data(), out.data(), lse.data());
    std::vector<float> ref_out, ref_lse;
    reference(c, ref_out, ref_lse);
    EXPECT_LT(max_rel_err(out, ref_out), 1e-5);
    EXPECT_LT(max_rel_err(lse, ref_lse), 1e-5);
  }
}

// Splits each sequence's pages into a shared-looking prefix level and its own remainder, and
// checks that merging the two levels gives the one-level result (to 1e-5 relative).
TEST_P(PagedAttention, TwoLevelsMergeToOneLevel) {
  const auto [page_size, layout] = GetParam();
  std::mt19937 rng(99 + page_size);
  Case c = make_case(rng, page_size, layout, 7);
  fill_prefix(c);
  std::vector<float> k, v;
  new_kv_rows(c, k, v);
  PagedKVBatch one = full_batch(c);
  cpu_append_kv(one, c.shape.kv, k.data(), v.data(), c.pages.data());
  std::vector<float> expect(c.q.size());
  cpu_paged_attention(one, c.shape, c.q.data(), c.pages.data(), expect.data(), nullptr);

  PagedKVBatch prefix, own;
  prefix.causal = false;
  std::uniform_int_distribution<int> cut_dist(0, 100);
  for (const Seq& s : c.seqs) {
    // Whole pages strictly before the first new token may go to the prefix level (maybe none).
    const int max_cut = (s.kv_len - s.q_len) / page_size;
    const int cut = max_cut == 0 ? 0 : cut_dist(rng) % (max_cut + 1);
    std::vector<int32_t> head(s.pages.begin(), s.pages.begin() + cut),
        tail(s.pages.begin() + cut, s.pages.end());
    prefix.add(s.q_len, head, cut * page_size, page_size);
    own.add(s.q_len, tail, s.kv_len - cut * page_size, page_size);
  }
  const size_t n = c.q.size(), rows = size_t(c.T) * 4;
  std::vector<float> o1(n), l1(rows), o2(n), l2(rows);
  cpu_paged_attention(prefix, c.shape, c.q.data(), c.pages.data(), o1.data(), l1.data());
  cpu_paged_attention(own, c.shape, c.q.data(), c.pages.data(), o2.data(), l2.data());
  merge_attention_states(o1.data(), l1.data(), o2.data(), l2.data(), c.T, 4, 16);
  for (float x : o1) ASSERT_FALSE(std::isnan(x));
  EXPECT_LT(max_rel_err(o1, expect), 1e-5);
}

// The (row, head) pairs split across 1, 2 or 5 threads give the same bits, and a row's result
// does not depend on the other entries of its batch (the first entry alone, same bits). D = 40
// is not a multiple of the dot product's 16 lanes: the tail counts too.
TEST_P(PagedAttention, ThreadsAndBatchmatesDoNotChangeTheBits) {
  const auto [page_size, layout] = GetParam();
  std::mt19937 rng(7 + page_size);
  const int D = 40;
  Case c = make_case(rng, page_size, layout, 9, D);
  fill_prefix(c);
  std::vector<float> k, v;
  new_kv_rows(c, k, v);
  const PagedKVBatch batch = full_batch(c);
  cpu_append_kv(batch, c.shape.kv, k.data(), v.data(), c.pages.data());
  auto run = [&](const PagedKVBatch& b, int threads, int rows) {
    ThreadPool pool(threads);
    std::vector<float> out(size_t(rows) * 4 * D), lse(size_t(rows) * 4);
    cpu_paged_attention(b, c.shape, c.q.data(), c.pages.data(), out.data(), lse.data(), &pool);
    out.insert(out.end(), lse.begin(), lse.end());
    return out;
  };
  const std::vector<float> one = run(batch, 1, c.T);
  EXPECT_EQ(run(batch, 2, c.T), one);
  EXPECT_EQ(run(batch, 5, c.T), one);
  PagedKVBatch first;
  first.add(c.seqs[0].q_len, c.seqs[0].pages, c.seqs[0].kv_len, page_size);
  const int rows = c.seqs[0].q_len;
  const std::vector<float> alone = run(first, 2, rows);
  for (int i = 0; i < rows * 4 * D; ++i) ASSERT_EQ(alone[size_t(i)], one[size_t(i)]) << i;
  for (int i = 0; i < rows * 4; ++i)
    ASSERT_EQ(alone[size_t(rows * 4 * D + i)], one[size_t(c.T * 4 * D + i)]) << "lse " << i;
}

INSTANTIATE_TEST_SUITE_P(PageSizesAndLayouts, PagedAttention,
                         ::testing::Combine(::testing::Values(1, 16, 64),
                                            ::testing::Values(KVLayout::NHD, KVLayout::HND)));

TEST(AttentionMerge, EmptyStatesAreExact) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> oa{1, 2}, la{-inf}, ob{3, 4}, lb{0.5f};
  merge_attention_states(oa.data(), la.data(), ob.data(), lb.data(), 1, 1, 2);
  EXPECT_EQ(oa, (std::vector<float>{3, 4}));
  EXPECT_EQ(la[0], 0.5f);
  std::vector<float> oc{0, 0}, lc{-inf};
  merge_attention_states(oa.data(), la.data(), oc.data(), lc.data(), 1, 1, 2);
  EXPECT_EQ(oa, (std::vector<float>{3, 4}));
  std::vector<float> od{0, 0}, ld{-inf};
  merge_attention_states(od.data(), ld.data(), oc.data(), lc.data(), 1, 1, 2);
  EXPECT_EQ(od, (std::vector<float>{0, 0}));
  EXPECT_EQ(ld[0], -inf);
}

TEST(PagedKVBatch, ValidateRejectsInconsistentTables) {
  PagedKVBatch b;
  b.add(2, {0, 1}, 20, 16);
  EXPECT_NO_THROW(b.validate(2, 16, 2));
  EXPECT_THROW(b.validate(3, 16, 2), Error);  // wrong token count
  EXPECT_THROW(b.validate(2, 16, 1), Error);  // page id out of range
  PagedKVBatch bad = b;
  bad.kv_last_page_len[0] = 17;
  EXPECT_THROW(bad.validate(2, 16, 2), Error);
  PagedKVBatch causal;
  causal.qo_indptr = {0, 5};
  causal.kv_indptr = {0, 1};
  causal.kv_indices = {0};
  causal.kv_last_page_len = {3};
  EXPECT_THROW(causal.validate(5, 16, 1), Error);  // 5 queries over 3 keys
  EXPECT_THROW(b.add(1, {0}, 20, 16), Error);      // one page cannot hold 20 tokens
}

}  // namespace
}  // namespace nc

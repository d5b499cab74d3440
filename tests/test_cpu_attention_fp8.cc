// CPU paged attention over an fp8 (e4m3) KV cache against the float32 attention over the same
// cache dequantised (codes * scale, element by element): over random batches mixing decodes and
// prefill chunks, GQA, page sizes 1, 5 and 16, both layouts, head dims 32 (the AVX2 eight-key
// path) and 24, one level and cascade levels (non-causal shared pages merged with the causal own
// level). With power-of-two scales the two agree bit for bit (scaling by 2^k is exact); with
// other scales within 1e-5 (relative where a value exceeds 1). The append writes f32_to_e4m3(x /
// scale) at each slot, byte for byte.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_attention.h"
#include "core/error.h"
#include "core/fp8.h"

namespace nc {
namespace {

struct Fp8Case {
  AttentionShape fp8, f32;         // the same shape, fp8 pages or float32 pages
  std::vector<int> q_len, kv_len;  // per sequence
  std::vector<std::vector<int32_t>> pages;
  std::vector<uint8_t> codes;  // the fp8 pool
  std::vector<float> deq;      // the same pool dequantised
  std::vector<float> k, v;     // every token's K/V rows, sequence by sequence [N, Hk*D]
  std::vector<float> q;        // [T, Hq*D] for the step's query rows
  int T = 0;
};

Fp8Case make_case(std::mt19937& rng, int ps, KVLayout layout, int D, float k_scale, float v_scale) {
  Fp8Case c;
  const int Hq = 8, Hk = 2, batch = 5;
  std::uniform_int_distribution<int> q_dist(1, 7), prefix_dist(0, 37), coin(0, 1);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  int total = 0;
  for (int b = 0; b < batch; ++b) {
    const int q = coin(rng) ? 1 : q_dist(rng), kv = q + prefix_dist(rng);
    c.q_len.push_back(q);
    c.kv_len.push_back(kv);
    c.pages.emplace_back();
    for (int p = 0; p < (kv + ps - 1) / ps; ++p) c.pages.back().push_back(total++);
    c.T += q;
  }
  std::vector<int32_t> perm(total);
  for (int i = 0; i < total; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  for (auto& s : c.pages)
    for (int32_t& p : s) p = perm[p];
  KVCacheShape kv{1, total, ps, Hk, D, layout};
  c.f32 = AttentionShape{Hq, Hk, D, 1.0f / std::sqrt(float(D)), kv};
  kv.fp8 = true, kv.k_scale = k_scale, kv.v_scale = v_scale;
  c.fp8 = AttentionShape{Hq, Hk, D, c.f32.sm_scale, kv};
  int tokens = 0;
  for (int kvl : c.kv_len) tokens += kvl;
  c.k.resize(size_t(tokens) * Hk * D);
  c.v.resize(c.k.size());
  for (float& x : c.k) x = normal(rng);
  for (float& x : c.v) x = normal(rng);
  c.k[3] = 1e4f;  // saturates to 448 * scale
  c.q.resize(size_t(c.T) * Hq * D);
  for (float& x : c.q) x = normal(rng);
  return c;
}

// Appends every token of every sequence (one batch whose q rows are all the tokens), then
// dequantises the pool element by element.
void fill_pool(Fp8Case& c) {
  const KVCacheShape& kv = c.fp8.kv;
  PagedKVBatch all;
  for (size_t b = 0; b < c.pages.size(); ++b)
    all.add(c.kv_len[b], c.pages[b], c.kv_len[b], kv.page_size);
  c.codes.assign(size_t(kv.num_pages) * kv.elems_per_page(), 0x7f);  // NaN where never written
  cpu_append_kv_fp8(all, kv, c.k.data(), c.v.data(), c.codes.data());
  c.deq.resize(c.codes.size());
  const int64_t half = kv.elems_per_page() / 2;
  for (size_t i = 0; i < c.codes.size(); ++i)
    c.deq[i] = e4m3_to_f32(c.codes[i]) *
               (int64_t(i) % kv.elems_per_page() < half ? kv.k_scale : kv.v_scale);
}

// Up to n whole pages of sequence s that lie before its first query row (a cascade level may
// only share keys every row of the entry sees).
int shared_pages(const Fp8Case& c, size_t s, int n) {
  return std::min(n, (c.kv_len[s] - c.q_len[s]) / c.fp8.kv.page_size);
}

// The step's own level: each sequence's last q_len tokens attend causally over all its pages.
PagedKVBatch own_level(const Fp8Case& c, int first_page = 0) {
  PagedKVBatch b;
  for (size_t s = 0; s < c.pages.size(); ++s) {
    const int skip = shared_pages(c, s, first_page);
    const std::vector<int32_t> pages(c.pages[s].begin() + skip, c.pages[s].end());
    b.add(c.q_len[s], pages, c.kv_len[s] - skip * c.fp8.kv.page_size, c.fp8.kv.page_size);
  }
  return b;
}

// A shared-style level: each sequence's rows see its first pages (shared_pages) without a causal
// mask; an empty entry where the sequence has none.
PagedKVBatch shared_level(const Fp8Case& c, int n) {
  PagedKVBatch b;
  for (size_t s = 0; s < c.pages.size(); ++s) {
    const int take = shared_pages(c, s, n);
    const std::vector<int32_t> pages(c.pages[s].begin(), c.pages[s].begin() + take);
    b.add(c.q_len[s], pages, take * c.fp8.kv.page_size, c.fp8.kv.page_size);
  }
  b.causal = false;
  return b;
}

struct Result {
  std::vector<float> out, lse;
};

Result run(const std::vector<PagedKVBatch>& levels, const AttentionShape& s, const Fp8Case& c,
           const void* pages) {
  const int Hq = s.num_qo_heads, D = s.head_dim;
  Result r{std::vector<float>(size_t(c.T) * Hq * D), std::vector<float>(size_t(c.T) * Hq)};
  cpu_paged_attention(levels[0], s, c.q.data(), pages, r.out.data(), r.lse.data());
  for (size_t l = 1; l < levels.size(); ++l) {
    Result part{std::vector<float>(r.out.size()), std::vector<float>(r.lse.size())};
    cpu_paged_attention(levels[l], s, c.q.data(), pages, part.out.data(), part.lse.data());
    merge_attention_states(r.out.data(), r.lse.data(), part.out.data(), part.lse.data(), c.T, Hq,
                           D);
  }
  return r;
}

// max |a - b| / max(1, |b|): absolute for O(1) outputs, relative for large LSEs (a saturated key
// makes scores of a hundred and more).
float max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::fabs(a[i] - b[i]) / std::max(1.0f, std::fabs(b[i])));
  return m;
}

using Params = std::tuple<int, KVLayout, int, bool>;  // page size, layout, D, power-of-two scales
class Fp8Attention : public ::testing::TestWithParam<Params> {};

TEST_P(Fp8Attention, MatchesFloatAttentionOverTheDequantisedCache) {
  const auto [ps, layout, D, pow2] = GetParam();
  std::mt19937 rng(uint32_t(ps * 131 + D + (layout == KVLayout::HND) * 7 + pow2));
  const float ks = pow2 ? 0.5f : 0.37f, vs = pow2 ? 2.0f : 1.7f;
  for (int trial = 0; trial < 3; ++trial) {
    Fp8Case c = make_case(rng, ps, layout, D, ks, vs);
    fill_pool(c);
    const float tol = pow2 ? 0.0f : 1e-5f;
    const std::vector<std::vector<PagedKVBatch>> plans = {
        {own_level(c)},                         // one level (decodes and prefill chunks)
        {shared_level(c, 1), own_level(c, 1)},  // a cascade: shared prefix page, then the rest
        {shared_level(c, 2), own_level(c, 2)}};
    for (size_t p = 0; p < plans.size(); ++p) {
      const Result a = run(plans[p], c.fp8, c, c.codes.data());
      const Result b = run(plans[p], c.f32, c, c.deq.data());
      EXPECT_LE(max_diff(a.out, b.out), tol) << "plan " << p << " trial " << trial;
      EXPECT_LE(max_diff(a.lse, b.lse), tol) << "plan " << p << " trial " << trial;
      for (float x : a.out) ASSERT_TRUE(std::isfinite(x));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Fp8Attention,
                         ::testing::Combine(::testing::Values(1, 5, 16),
                                            ::testing::Values(KVLayout::NHD, KVLayout::HND),
                                            ::testing::Values(32, 24), ::testing::Bool()));

TEST(Fp8Append, WritesTheQuantisedCodeOfEveryValueAtItsSlot) {
  std::mt19937 rng(5);
  for (KVLayout layout : {KVLayout::NHD, KVLayout::HND}) {
    Fp8Case c = make_case(rng, 4, layout, 16, 0.25f, 3.0f);
    fill_pool(c);
    const KVCacheShape& kv = c.fp8.kv;
    const int Hk = kv.num_kv_heads, D = kv.head_dim;
    size_t row = 0;
    for (size_t s = 0; s < c.pages.size(); ++s)
      for (int t = 0; t < c.kv_len[s]; ++t, ++row)
        for (int h = 0; h < Hk; ++h)
          for (int kvi = 0; kvi < 2; ++kvi) {
            const float* src = (kvi ? c.v : c.k).data() + (row * Hk + h) * D;
            const uint8_t* dst = c.codes.data() +
                                 c.pages[s][t / kv.page_size] * kv.elems_per_page() +
                                 kv.offset_in_page(kvi, t % kv.page_size, h);
            for (int d = 0; d < D; ++d)
              ASSERT_EQ(dst[d], f32_to_e4m3(src[d] / (kvi ? kv.v_scale : kv.k_scale)))
                  << "seq " << s << " token " << t << " head " << h << " kv " << kvi;
          }
  }
}

TEST(Fp8Append, RefusesBadScalesAndAFloatCache) {
  std::mt19937 rng(9);
  Fp8Case c = make_case(rng, 4, KVLayout::NHD, 16, 1.0f, 1.0f);
  std::vector<uint8_t> pool(size_t(c.fp8.kv.num_pages) * c.fp8.kv.elems_per_page());
  PagedKVBatch b = own_level(c);
  KVCacheShape bad = c.fp8.kv;
  bad.v_scale = 0.0f;
  EXPECT_THROW(cpu_append_kv_fp8(b, bad, c.k.data(), c.v.data(), pool.data()), Error);
  EXPECT_THROW(cpu_append_kv_fp8(b, c.f32.kv, c.k.data(), c.v.data(), pool.data()), Error);
}

}  // namespace
}  // namespace nc

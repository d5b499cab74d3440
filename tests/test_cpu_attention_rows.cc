// The attention row loops of every instruction set (attention_rows.h) give the portable loops'
// bits: scores over runs of keys of every length around the 8-key blocks, head dims with and
// without a tail past the 16-lane groups, strides wider than a row; and accumulation likewise.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/attention_rows.h"
#include "backend/cpu/cpu_isa.h"

namespace nc {
namespace {

std::vector<float> randoms(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

TEST(CpuAttentionRows, Avx2MatchesPortableBitForBit) {
  if (!cpu_isa_supported(CpuIsa::Avx2)) GTEST_SKIP() << "no AVX2 on this CPU";
  const attn::RowKernels avx2 = attn::avx2_rows(), &port = attn::kPortableRows;
  std::mt19937 rng(77);
  for (int D : {64, 128, 48, 72, 8}) {
    const int64_t stride = 3 * D + 5;
    for (int n : {1, 7, 8, 9, 16, 23, 40}) {
      const std::vector<float> q = randoms(size_t(D), rng), kv = randoms(size_t(stride * n), rng);
      std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
      avx2.scores(q.data(), kv.data(), stride, n, D, 0.125f, a.data());
      port.scores(q.data(), kv.data(), stride, n, D, 0.125f, b.data());
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << "scores D=" << D << " n=" << n;
      const std::vector<float> p = randoms(size_t(n), rng), start = randoms(size_t(D), rng);
      std::vector<float> oa = start, ob = start;
      avx2.accumulate(p.data(), kv.data(), stride, n, D, oa.data());
      port.accumulate(p.data(), kv.data(), stride, n, D, ob.data());
      EXPECT_EQ(0, std::memcmp(oa.data(), ob.data(), oa.size() * 4))
          << "accumulate D=" << D << " n=" << n;
    }
  }
}

}  // namespace
}  // namespace nc

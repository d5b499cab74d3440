// Backend::sample_tokens' host default (the reference for the CUDA backend): greedy rows are the
// argmax, filtered rows draw among the host sampler's candidates (filter_candidates) with their
// probabilities, the same seed gives the same token, and a row's token ignores the other rows.
// Also the CUDA sampler's host-side row parameters (sampler_params.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "backend/backend.h"
#include "backend/sampler_params.h"
#include "core/error.h"
#include "core/random_init.h"
#include "engine/sampling.h"
#include "sampling_check.h"

namespace nc {
namespace {

using testing::contains;
using testing::host_candidates;
using testing::mixed_rows;
using testing::sampling_row;

class BackendSampling : public ::testing::Test {
 protected:
  Tensor logits_tensor(const std::vector<float>& x, int64_t rows) {
    Tensor t = cpu->alloc({rows, int64_t(x.size()) / rows}, DType::F32);
    cpu->copy_from_host(t, x.data());
    return t;
  }
  std::vector<float> random_logits(size_t n, float scale) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = normal(rng);
    return v;
  }
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  std::mt19937 rng{4242};
};

TEST_F(BackendSampling, TopKOneIsArgmax) {
  const int R = 16, V = 3001;
  const std::vector<float> x = random_logits(size_t(R) * V, 3.0f);
  std::vector<RowSampling> rows;
  for (int r = 0; r < R; ++r) rows.push_back(sampling_row(0.3f + 0.2f * float(r), mix64(r), 1));
  const std::vector<int32_t> got = cpu->sample_tokens(logits_tensor(x, R), rows);
  for (int r = 0; r < R; ++r)
    EXPECT_EQ(got[r], argmax(std::span<const float>(x.data() + size_t(r) * V, V))) << r;
}

TEST_F(BackendSampling, DrawsAreHostCandidatesAndRowsAreIndependent) {
  const int R = 45, V = 2048;
  const std::vector<float> x = random_logits(size_t(R) * V, 2.0f);
  for (uint64_t salt : {1u, 2u, 3u}) {
    const std::vector<RowSampling> rows = mixed_rows(R, salt);
    const std::vector<int32_t> got = cpu->sample_tokens(logits_tensor(x, R), rows);
    for (int r = 0; r < R; ++r) {
      const std::span<const float> lr(x.data() + size_t(r) * V, V);
      if (rows[r].inv_temperature == 0) {
        EXPECT_EQ(got[r], argmax(lr)) << r;
        continue;
      }
      EXPECT_TRUE(contains(host_candidates(lr, rows[r]).ids, got[r])) << "row " << r;
      // Alone, or after other rows, the row draws the same token.
      EXPECT_EQ(cpu->sample_tokens(logits_tensor({lr.begin(), lr.end()}, 1), {rows[r]})[0], got[r]);
    }
    EXPECT_EQ(cpu->sample_tokens(logits_tensor(x, R), rows), got) << "same seeds, same tokens";
  }
}

// A filter that keeps every id changes nothing: the draw is the unfiltered one.
TEST_F(BackendSampling, NoOpFilterKeepsUnfilteredDraw) {
  const int R = 8, V = 500;
  const std::vector<float> x = random_logits(size_t(R) * V, 1.0f);
  std::vector<RowSampling> plain, noop;
  for (int r = 0; r < R; ++r) {
    plain.push_back(sampling_row(0.9f, mix64(r + 7)));
    noop.push_back(sampling_row(0.9f, mix64(r + 7), V));
  }
  const Tensor t = logits_tensor(x, R);
  EXPECT_EQ(cpu->sample_tokens(t, plain), cpu->sample_tokens(t, noop));
}

// The unfiltered draw (which skips ids that cannot win) is the argmax, lowest id on ties, of the
// full Gumbel scan as backend.h specifies it: wide logits (most ids skipped), ties, -inf.
TEST_F(BackendSampling, UnfilteredDrawIsTheFullGumbelArgmax) {
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<float> x = random_logits(2000, trial % 3 == 0 ? 0.5f : 8.0f);
    if (trial % 5 == 1) x[17] = x[1500] = *std::max_element(x.begin(), x.end()) + 3.0f;
    if (trial % 7 == 2) x[3] = -INFINITY;
    const float t = trial % 2 ? 0.6f : 1.3f;
    const RowSampling p = sampling_row(t, mix64(uint64_t(trial) + 99));
    int32_t want = 0;
    float best = -INFINITY;
    for (int32_t i = 0; i < int32_t(x.size()); ++i) {
      const float u = uniform_hash01(p.seed, uint64_t(i)) + 0.5f / 16777216.0f;
      const float s = x[size_t(i)] * p.inv_temperature - std::log(-std::log(u));
      if (s > best) best = s, want = i;
    }
    EXPECT_EQ(draw_token(x, p), want) << "trial " << trial;
  }
}

// Over 4000 seeds, one row's draws follow the candidates' renormalised probabilities.
TEST_F(BackendSampling, DrawFrequenciesMatchHostProbabilities) {
  const int N = 4000, V = 64;
  std::vector<float> one(V, -8.0f);
  const float top[] = {2.0f, 1.7f, 1.5f, 1.2f, 1.0f, 0.5f, 0.0f, -0.5f};
  for (int i = 0; i < 8; ++i) one[size_t(i) * 7 + 3] = top[i];
  std::vector<float> x;
  for (int i = 0; i < N; ++i) x.insert(x.end(), one.begin(), one.end());
  const Tensor t = logits_tensor(x, N);
  testing::expect_draws_follow_candidates(*cpu, t, one, N);
}

TEST_F(BackendSampling, RejectsBadParameters) {
  const Tensor t = logits_tensor(std::vector<float>(10, 0.0f), 1);
  EXPECT_THROW(cpu->sample_tokens(t, {sampling_row(1, 0, -1, 0.0f)}), Error);
  EXPECT_THROW(cpu->sample_tokens(t, {sampling_row(1, 0, -1, 1.5f)}), Error);
  EXPECT_THROW(cpu->sample_tokens(t, {sampling_row(1, 0, -1, 1, -0.1f)}), Error);
  EXPECT_THROW(cpu->sample_tokens(t, {RowSampling{-1.0f, 0}}), Error);
  EXPECT_THROW(cpu->sample_tokens(t, {sampling_row(1, 0), sampling_row(1, 1)}),
               Error);  // 2 rows for 1
}

// The CUDA sampler's per-row parameters (backend/cuda/sampler_params.h, host-only code): what a
// RowSampling becomes, and the block of columns that is uploaded in one copy.
TEST(SamplerParams, RowTurnsOffTheFiltersARowDoesNotUse) {
  using cuda_host::SamplerRow;
  const int V = 100;
  const SamplerRow greedy = SamplerRow::from(RowSampling{0.0f, 7, 5, 0.5f, 0.1f}, V);
  EXPECT_EQ(greedy.seed, 7u);
  EXPECT_EQ(greedy.inv_temperature, 0.0f);
  EXPECT_EQ(greedy.temperature, 1.0f) << "greedy rows keep -inf logits out of NaN";
  EXPECT_EQ(greedy.top_k, V);
  EXPECT_EQ(greedy.top_p, 1.0f);
  EXPECT_EQ(greedy.min_p, -1.0f);
  const SamplerRow plain = SamplerRow::from(RowSampling{0.5f, 3}, V);
  EXPECT_EQ(plain.temperature, 2.0f);
  EXPECT_EQ(plain.top_k, V);
  EXPECT_EQ(plain.top_p, 1.0f);
  EXPECT_EQ(plain.min_p, -1.0f);
  const SamplerRow filtered = SamplerRow::from(RowSampling{2.0f, 9, 10, 0.9f, 0.05f}, V);
  EXPECT_EQ(filtered.seed, 9u);
  EXPECT_EQ(filtered.inv_temperature, 2.0f);
  EXPECT_EQ(filtered.temperature, 0.5f);
  EXPECT_EQ(filtered.top_k, 10);
  EXPECT_EQ(filtered.top_p, 0.9f);
  EXPECT_EQ(filtered.min_p, 0.05f);
  // A top-k outside (0, vocab) is off, also in a row that filters otherwise.
  EXPECT_EQ(SamplerRow::from(RowSampling{1.0f, 0, V, 0.9f, 0.0f}, V).top_k, V);
  EXPECT_EQ(SamplerRow::from(RowSampling{1.0f, 0, -1, 0.9f, 0.0f}, V).top_k, V);
}

TEST(SamplerParams, BlockHoldsOneColumnPerParameter) {
  using cuda_host::SamplerParamBlock;
  using cuda_host::SamplerRow;
  std::vector<SamplerRow> rows(3);
  for (int r = 0; r < 3; ++r)
    rows[size_t(r)] = {uint64_t(1000 + r),   0.5f + r,        2.0f + r, 10 + r,
                       0.25f * float(r + 1), 0.01f * float(r)};
  const SamplerParamBlock block(rows);
  EXPECT_EQ(block.rows(), 3u);
  EXPECT_EQ(block.bytes(), 3u * 28u) << "8 bytes of seed and five 4-byte parameters a row";
  const auto* base = static_cast<const std::byte*>(block.data());
  const cuda_host::SamplerColumns c = block.columns(base);
  // Seeds first, then the 4-byte columns back to back (FlashInfer reads each as an array).
  EXPECT_EQ(static_cast<const void*>(c.seed), static_cast<const void*>(base));
  EXPECT_EQ(static_cast<const void*>(c.inv_temperature), static_cast<const void*>(base + 24));
  EXPECT_EQ(static_cast<const void*>(c.min_p), static_cast<const void*>(base + 24 + 4 * 12));
  for (size_t r = 0; r < 3; ++r) {
    EXPECT_EQ(c.seed[r], rows[r].seed);
    EXPECT_EQ(c.inv_temperature[r], rows[r].inv_temperature);
    EXPECT_EQ(c.temperature[r], rows[r].temperature);
    EXPECT_EQ(c.top_k[r], rows[r].top_k);
    EXPECT_EQ(c.top_p[r], rows[r].top_p);
    EXPECT_EQ(c.min_p[r], rows[r].min_p);
  }
}

}  // namespace
}  // namespace nc

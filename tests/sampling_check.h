// Checks of Backend::sample_tokens against the host sampler's filter (backend/sampling_filter.h),
// by the CPU test (the host default) and the GPU test (the CUDA backend).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "backend/sampling_filter.h"
#include "core/random_init.h"

namespace nc::testing {

// A row drawn at `temperature` (0: greedy) with the given filters.
inline RowSampling sampling_row(float temperature, uint64_t seed, int top_k = -1, float top_p = 1,
                                float min_p = 0) {
  return {temperature == 0 ? 0.0f : 1.0f / temperature, seed, top_k, top_p, min_p};
}

// n rows cycling through every filter and their combinations, plus greedy rows (whose filters
// must not matter) and plain temperature rows; seeds and temperatures vary with the row.
inline std::vector<RowSampling> mixed_rows(int n, uint64_t salt) {
  struct Kind {
    bool greedy;
    int top_k;
    float top_p, min_p;
  };
  static const Kind kinds[] = {
      {true, 20, 0.5f, 0},        {false, -1, 1, 0},       {false, 0, 1, 0},
      {false, -1, 0, 0},          {false, -1, 1, -1},      {false, 1000, 0.9f, 0},
      {false, 100, 0.95f, 0.05f}, {false, -1, 0.8f, 0.1f}, {false, 7, 1, 0.3f}};
  std::vector<RowSampling> rows;
  for (int r = 0; r < n; ++r) {
    Kind k = kinds[r % 9];
    if (k.top_k == 0) k.top_k = 1 + r % 40;                    // top-k only, k in 1..40
    if (k.top_p == 0) k.top_p = 0.3f + 0.07f * float(r % 10);  // top-p only
    if (k.min_p < 0) k.min_p = 0.02f + 0.05f * float(r % 4);   // min-p only
    const float t = k.greedy ? 0.0f : 0.5f + 0.25f * float(r % 5);
    rows.push_back(sampling_row(t, mix64(uint64_t(r) * 131 + salt), k.top_k, k.top_p, k.min_p));
  }
  return rows;
}

// The host sampler's candidates (ids and probabilities) for a row drawn with `p` (not greedy).
inline Candidates host_candidates(std::span<const float> logits, const RowSampling& p) {
  return filter_candidates(logits,
                           CandidateFilter{1.0f / p.inv_temperature, p.top_k, p.top_p, p.min_p});
}

inline bool contains(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// Draws of one row against the candidates' probabilities: draws outside the candidates, the
// total variation distance, and Pearson's chi-square over the candidates.
struct DrawFit {
  int outside = 0;
  double tv = 0;
  double chi2 = 0;
  int df = 0;
};

inline DrawFit fit_draws(const std::vector<int32_t>& draws, const Candidates& c) {
  DrawFit f;
  std::vector<int> count(c.ids.size(), 0);
  for (int32_t t : draws) {
    const auto it = std::find(c.ids.begin(), c.ids.end(), t);
    if (it == c.ids.end())
      ++f.outside;
    else
      ++count[size_t(it - c.ids.begin())];
  }
  const double n = double(draws.size());
  for (size_t k = 0; k < c.ids.size(); ++k) {
    const double want = c.probs[k] * n;
    f.tv += std::abs(count[k] - want) / n / 2;
    f.chi2 += (count[k] - want) * (count[k] - want) / want;
  }
  f.df = int(c.ids.size()) - 1;
  return f;
}

// The chi-square distribution's 0.999 quantile for df = 1..10 (a false alarm in 1000).
inline double chi2_crit_999(int df) {
  static const double q[] = {10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59};
  return df >= 1 && df <= 10 ? q[df - 1] : 0;
}

// `t` holds N copies of the row `one`: under 4 filter settings, each row with its own seed, the
// backend's draws stay inside the host candidates and follow their probabilities (total
// variation < 0.04, Pearson's chi-square below its 0.999 quantile).
inline void expect_draws_follow_candidates(Backend& b, const Tensor& t, std::span<const float> one,
                                           int N) {
  for (RowSampling p :
       {sampling_row(1.3f, 0, 5), sampling_row(0.8f, 0, -1, 0.9f),
        sampling_row(1.0f, 0, -1, 1, 0.2f), sampling_row(1.5f, 0, 6, 0.95f, 0.1f)}) {
    std::vector<RowSampling> rows(size_t(N), p);
    for (int i = 0; i < N; ++i) rows[size_t(i)].seed = mix64(uint64_t(i) + 1000);
    const Candidates c = host_candidates(one, p);
    ASSERT_GE(c.ids.size(), 3u);
    const DrawFit f = fit_draws(b.sample_tokens(t, rows), c);
    EXPECT_EQ(f.outside, 0);
    EXPECT_LT(f.tv, 0.04);
    EXPECT_LT(f.chi2, chi2_crit_999(f.df)) << "df " << f.df;
  }
}

}  // namespace nc::testing

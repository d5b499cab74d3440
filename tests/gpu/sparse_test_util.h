// Helpers for the sparse decode tests (test_cuda_sparse*.cc): exactly representable data, the CPU
// rule's expected step, and bounds tensors on the GPU.
//
// Exact data: keys are small integers and queries +-1/4, 1/2 or 1, so every product q_d * k_d is a
// multiple of 1/4 below 2^10 and every score a sum float adds exactly in any order. The GPU's
// page scores (summed in another order than the CPU's) then equal the CPU's bit for bit, equal
// pages tie exactly, and the selection must match the CPU rule page for page, ties included.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "kv/page_bounds.h"
#include "kv/page_selection.h"

namespace nc::testing {

inline Shape page_shape(const KVCacheShape& kv) {
  return kv.layout == KVLayout::NHD
             ? Shape{kv.num_pages, 2, kv.page_size, kv.num_kv_heads, kv.head_dim}
             : Shape{kv.num_pages, 2, kv.num_kv_heads, kv.page_size, kv.head_dim};
}

inline float exact_query_value(std::mt19937& rng) {
  static const float v[] = {-1.0f, -0.5f, -0.25f, 0.25f, 0.5f, 1.0f};
  return v[std::uniform_int_distribution<int>(0, 5)(rng)];
}

inline float small_int(std::mt19937& rng, int lo, int hi) {
  return float(std::uniform_int_distribution<int>(lo, hi)(rng));
}

inline std::vector<float> exact_queries(std::mt19937& rng, size_t n) {
  std::vector<float> q(n);
  for (float& x : q) x = exact_query_value(rng);
  return q;
}

// A float32 tensor [num_pages, 2, Hk, D] on `be` with every page empty (+inf / -inf).
inline Tensor empty_bounds(Backend& be, const KVCacheShape& kv) {
  const int64_t hd = int64_t(kv.num_kv_heads) * kv.head_dim;
  std::vector<float> h(size_t(kv.num_pages) * 2 * hd);
  for (int64_t p = 0; p < kv.num_pages; ++p) {
    std::fill_n(h.begin() + p * 2 * hd, hd, INFINITY);
    std::fill_n(h.begin() + p * 2 * hd + hd, hd, -INFINITY);
  }
  Tensor t = be.alloc({kv.num_pages, 2, kv.num_kv_heads, kv.head_dim}, DType::F32);
  be.copy_from_host(t, h.data());
  return t;
}

// The CPU store's bounds laid out as the backend's tensor: [num_pages, 2, Hk, D].
inline std::vector<float> bounds_as_tensor(const PageBounds& b) {
  const size_t hd = size_t(b.num_kv_heads()) * b.head_dim();
  std::vector<float> out(size_t(b.num_pages()) * 2 * hd);
  for (int p = 0; p < b.num_pages(); ++p) {
    std::memcpy(&out[size_t(p) * 2 * hd], b.min(p), hd * 4);
    std::memcpy(&out[size_t(p) * 2 * hd + hd], b.max(p), hd * 4);
  }
  return out;
}

// The first index where a and b differ (NaN never equals), or -1.
inline int64_t first_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i])) return int64_t(i);
  return -1;
}

// The candidates (neither sink, window nor last page) of an entry of n pages and kv_len tokens.
inline std::pair<int, int> candidate_range(int n, int kv_len, int ps, const PageSelection& sel) {
  const int c0 = std::min(sel.sink_pages, n);
  const int c1 = std::max(c0, std::min(std::max(0, kv_len - sel.window_tokens) / ps, n - 1));
  return {c0, c1};
}

// What sparse_attention must attend to: each own-level decode entry over the budget replaced by
// select_pages' choice (CPU scores from `bounds` and q [T, Hq * D]), every other entry and level
// as it is. `boundary_ties` counts entries where a kept and a dropped candidate score equal.
inline AttentionStep expected_sparse_step(const AttentionStep& step, const PageBounds& bounds,
                                          const std::vector<float>& q, int num_qo_heads,
                                          const PageSelection& sel, int ps,
                                          int* boundary_ties = nullptr) {
  const PagedKVBatch& own = step.levels.back();
  const int D = bounds.head_dim();
  PagedKVBatch out;
  out.causal = own.causal;
  for (int b = 0; b < own.batch_size(); ++b) {
    const int n = own.num_pages(b), kv_len = own.kv_len(b, ps);
    const std::span<const int32_t> pages(own.kv_indices.data() + own.kv_indptr[b], size_t(n));
    if (own.q_len(b) != 1 || kv_len <= sel.token_budget) {
      out.add_pages(own.q_len(b), pages, kv_len, ps);
      continue;
    }
    AttentionStep one;
    one.num_tokens = 1;
    one.levels.resize(1);
    one.levels[0].add_pages(1, pages, kv_len, ps);
    const float* row = q.data() + int64_t(own.qo_indptr[b]) * num_qo_heads * D;
    const auto scores = decode_page_scores(one, bounds, row, num_qo_heads);
    const AttentionStep chosen = select_pages(one, scores, sel, ps, -1);
    const std::vector<int32_t>& kept = chosen.levels[0].kv_indices;
    out.add_pages(1, kept, chosen.levels[0].kv_len(0, ps), ps);
    if (boundary_ties == nullptr) continue;
    const auto [c0, c1] = candidate_range(n, kv_len, ps, sel);
    std::vector<float> kept_s, dropped_s;
    for (int i = c0; i < c1; ++i) {
      const bool k = std::find(kept.begin(), kept.end(), pages[size_t(i)]) != kept.end();
      (k ? kept_s : dropped_s).push_back(scores[0][size_t(i)]);
    }
    bool tie = false;
    for (float s : kept_s)
      tie |= std::find(dropped_s.begin(), dropped_s.end(), s) != dropped_s.end();
    *boundary_ties += tie;
  }
  AttentionStep e = step;
  e.levels.back() = out;
  return e;
}

// "entry b: expected [..] got [..]" for the entries whose ids differ (empty when equal).
inline std::string page_list_diff(const PagedKVBatch& expected, const std::vector<int32_t>& got) {
  auto list = [](std::span<const int32_t> v) {
    std::string s;
    for (int32_t x : v) {
      if (!s.empty()) s += ' ';
      s += std::to_string(x);
    }
    return s;
  };
  std::string msg;
  for (int b = 0; b < expected.batch_size(); ++b) {
    const size_t o = size_t(expected.kv_indptr[b]), n = size_t(expected.num_pages(b));
    if (o + n > got.size()) return "selected list shorter than expected";
    const std::span<const int32_t> e(expected.kv_indices.data() + o, n), g(got.data() + o, n);
    if (!std::equal(e.begin(), e.end(), g.begin()))
      msg += "entry " + std::to_string(b) + ": expected [" + list(e) + "] got [" + list(g) + "]\n";
  }
  return msg;
}

}  // namespace nc::testing

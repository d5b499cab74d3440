// CPU attention with AttentionShape's variants (backend.h: sm_scale, logits_soft_cap,
// window_left) against a dense double-precision reference written here from absolute positions
// (mask = causal + window, cap * tanh(s / cap) on s = q.k * sm_scale): one-level steps of
// decodes, prefills and prefill chunks (windows shorter than, equal to and longer than the
// sequences; keys outside every window poisoned with NaN, so reading one shows), and cascade
// steps of requests sharing prefixes (CascadePlanner, CascadeMode::Always, then window_view) run
// level by level with merge_attention_states as the CPU backend runs them, and through the
// backend itself; NHD and HND, GQA groups 1, 2 and 4, soft cap on and off, and the merged LSE.
// The AVX2 row kernels give the portable kernels' bits with every variant on.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/attention_rows.h"
#include "backend/cpu/cpu_attention.h"
#include "backend/cpu/cpu_isa.h"
#include "kv/cascade_planner.h"
#include "kv/sliding_window.h"
#include "shared_prefix_scenario.h"

namespace nc {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Variant {
  int Hq = 4, Hk = 2, D = 32;
  KVLayout layout = KVLayout::NHD;
  float sm_scale = 0.37f;
  float cap = 0.0f;
  int W = -1;
  std::string name() const {
    return "Hq " + std::to_string(Hq) + " Hk " + std::to_string(Hk) + " D " + std::to_string(D) +
           (layout == KVLayout::NHD ? " NHD" : " HND") + " cap " + std::to_string(cap) + " W " +
           std::to_string(W);
  }
};

// A step to run, the requests behind it (step order) and the data.
struct Problem {
  AttentionShape shape;
  AttentionStep step;
  std::vector<CascadeRequest> reqs;
  std::vector<float> pool, q;  // q: [T, Hq, D]
};

float& slot(Problem& p, const CascadeRequest& r, int t, int kv, int h, int d) {
  const KVCacheShape& s = p.shape.kv;
  return p.pool[size_t(int64_t(r.pages[size_t(t / s.page_size)]) * s.elems_per_page() +
                       s.offset_in_page(kv, t % s.page_size, h) + d)];
}

// Random pages and queries; slots past each request's last token are NaN. The queries are
// large enough that a soft cap of 2 bites.
Problem make_problem(const std::vector<CascadeRequest>& reqs, int num_pages, int page_size,
                     const Variant& v, CascadeMode mode, std::mt19937& rng, bool view = true) {
  Problem p;
  p.shape = AttentionShape{
      v.Hq,  v.Hk, v.D, v.sm_scale, KVCacheShape{1, num_pages, page_size, v.Hk, v.D, v.layout},
      v.cap, v.W};
  const CascadePlan plan = CascadePlanner(page_size, mode).plan(reqs);
  p.step = view ? window_view(plan.step, v.W, page_size) : plan.step;
  for (int i : plan.order) p.reqs.push_back(reqs[size_t(i)]);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  p.pool.resize(size_t(num_pages * p.shape.kv.elems_per_page()));
  for (float& x : p.pool) x = normal(rng);
  p.q.resize(size_t(p.step.num_tokens) * v.Hq * v.D);
  for (float& x : p.q) x = 3.0f * normal(rng);
  for (const CascadeRequest& r : p.reqs)
    for (int t = r.kv_len; t < int(r.pages.size()) * page_size; ++t)
      for (int kv = 0; kv < 2; ++kv)
        for (int h = 0; h < v.Hk; ++h)
          for (int d = 0; d < v.D; ++d) slot(p, r, t, kv, h, d) = kNaN;
  return p;
}

// Keys no row of a request sees (positions before its first row's window): NaN. Only for
// requests that share no page.
void poison_outside_windows(Problem& p) {
  if (p.shape.window_left < 0) return;
  for (const CascadeRequest& r : p.reqs)
    for (int t = 0; t < r.kv_len - r.q_len - p.shape.window_left; ++t)
      for (int kv = 0; kv < 2; ++kv)
        for (int h = 0; h < p.shape.num_kv_heads; ++h)
          for (int d = 0; d < p.shape.head_dim; ++d) slot(p, r, t, kv, h, d) = kNaN;
}

// The dense reference: per request, row j at position kv_len - q_len + j attends to the keys at
// max(0, pos - W) .. pos of its own page list, in double precision.
void reference(Problem& p, std::vector<double>& out, std::vector<double>& lse) {
  const AttentionShape& s = p.shape;
  const int Hq = s.num_qo_heads, D = s.head_dim, group = Hq / s.num_kv_heads;
  out.assign(p.q.size(), 0.0);
  lse.assign(size_t(p.step.num_tokens) * Hq, 0.0);
  int row = 0;
  for (const CascadeRequest& r : p.reqs)
    for (int j = 0; j < r.q_len; ++j, ++row)
      for (int h = 0; h < Hq; ++h) {
        const int pos = r.kv_len - r.q_len + j, lo = s.window_left < 0 ? 0 : pos - s.window_left;
        const float* q = p.q.data() + (size_t(row) * Hq + h) * D;
        std::vector<double> sc;
        double m = -INFINITY;
        for (int t = std::max(0, lo); t <= pos; ++t) {
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += double(q[d]) * slot(p, r, t, 0, h / group, d);
          double x = dot * s.sm_scale;
          if (s.logits_soft_cap > 0) x = s.logits_soft_cap * std::tanh(x / s.logits_soft_cap);
          sc.push_back(x);
          m = std::max(m, x);
        }
        double sum = 0;
        for (double& x : sc) sum += (x = std::exp(x - m));
        double* o = out.data() + (size_t(row) * Hq + h) * D;
        for (int t = std::max(0, lo), i = 0; t <= pos; ++t, ++i)
          for (int d = 0; d < D; ++d) o[d] += sc[size_t(i)] / sum * slot(p, r, t, 1, h / group, d);
        lse[size_t(row) * Hq + h] = (m + std::log(sum)) / std::log(2.0);
      }
}

// The step as the CPU backend runs it: each level (the window on the last one only), merged.
void run_levels(const Problem& p, const attn::RowKernels* rk, std::vector<float>& out,
                std::vector<float>& lse) {
  const size_t T = size_t(p.step.num_tokens), Hq = size_t(p.shape.num_qo_heads);
  AttentionShape shared = p.shape;
  shared.window_left = -1;
  out.assign(T * Hq * size_t(p.shape.head_dim), kNaN);
  lse.assign(T * Hq, kNaN);
  std::vector<float> o_l(out.size()), lse_l(lse.size());
  const size_t last = p.step.levels.size() - 1;
  for (size_t l = 0; l <= last; ++l) {
    const AttentionShape& s = l == last ? p.shape : shared;
    const bool first = l == 0;
    cpu_paged_attention(p.step.levels[l], s, p.q.data(), p.pool.data(),
                        first ? out.data() : o_l.data(), first ? lse.data() : lse_l.data(), nullptr,
                        rk);
    if (!first)
      merge_attention_states(out.data(), lse.data(), o_l.data(), lse_l.data(), int64_t(T), int(Hq),
                             p.shape.head_dim);
  }
}

// Relative error of out (norm) and of the LSE (largest), against the reference.
void expect_matches(Problem& p, const std::vector<float>& out, const std::vector<float>& lse) {
  std::vector<double> ro, rl;
  reference(p, ro, rl);
  double num = 0, den = 0, lse_err = 0;
  for (size_t i = 0; i < ro.size(); ++i) {
    ASSERT_TRUE(std::isfinite(out[i])) << "element " << i;
    num += (out[i] - ro[i]) * (out[i] - ro[i]);
    den += ro[i] * ro[i];
  }
  for (size_t i = 0; i < rl.size(); ++i)
    lse_err = std::max(lse_err, std::abs(lse[i] - rl[i]) / std::max(1.0, std::abs(rl[i])));
  EXPECT_LT(std::sqrt(num / den), 1e-5);
  EXPECT_LT(lse_err, 1e-5);
}

// Three requests of their own pages: a decode, a whole prefill and a prefill chunk.
std::vector<CascadeRequest> unshared(int page_size, int& num_pages) {
  std::vector<CascadeRequest> reqs = {{1, 37, {}}, {29, 29, {}}, {9, 50, {}}};
  num_pages = 0;
  for (CascadeRequest& r : reqs)
    while (int(r.pages.size()) * page_size < r.kv_len) r.pages.push_back(num_pages++);
  // Scatter: reverse the page ids.
  for (CascadeRequest& r : reqs)
    for (int32_t& p : r.pages) p = num_pages - 1 - p;
  return reqs;
}

std::vector<Variant> variants(int D) {
  std::vector<Variant> out;
  for (int Hk : {4, 2, 1})
    for (KVLayout layout : {KVLayout::NHD, KVLayout::HND})
      for (float cap : {0.0f, 2.0f}) out.push_back({4, Hk, D, layout, 0.37f, cap, -1});
  return out;
}

TEST(CpuAttentionVariants, OneLevelStepsMatchTheDenseReference) {
  std::mt19937 rng(11);
  for (int ps : {1, 3, 16})
    for (Variant v : variants(32))
      // Windows shorter than every sequence, equal to one (W + 1 = 29, 37 or 50), longer.
      for (int W : {-1, 0, 4, 15, 28, 36, 49, 200})
        // The step as it is (the kernel's mask skips what lies before each window) and its view.
        for (bool view : {false, true}) {
          v.W = W;
          SCOPED_TRACE(v.name() + " page size " + std::to_string(ps) + (view ? " view" : ""));
          int num_pages = 0;
          const std::vector<CascadeRequest> reqs = unshared(ps, num_pages);
          Problem p = make_problem(reqs, num_pages, ps, v, CascadeMode::Off, rng, view);
          poison_outside_windows(p);
          ASSERT_EQ(p.step.levels.size(), 1u);
          std::vector<float> out, lse;
          run_levels(p, nullptr, out, lse);
          expect_matches(p, out, lse);
        }
}

TEST(CpuAttentionVariants, SharedPrefixStepsMatchTheDenseReference) {
  std::mt19937 rng(12);
  int multi_level = 0;
  for (int ps : {1, 3, 16})
    for (const Variant& base : variants(32))
      for (int W : {-1, 0, 5, 17, 40, 1000}) {
        Variant v = base;
        v.W = W;
        SCOPED_TRACE(v.name() + " page size " + std::to_string(ps));
        const auto sc = testing::shared_prefix_scenario(rng, ps, 3, 6, 2 * ps);
        Problem p = make_problem(sc.reqs, sc.num_pages, ps, v, CascadeMode::Always, rng);
        multi_level += p.step.levels.size() > 1;
        std::vector<float> out, lse;
        run_levels(p, nullptr, out, lse);
        expect_matches(p, out, lse);
      }
  EXPECT_GT(multi_level, 50);  // the windows keep shared levels in many steps
}

TEST(CpuAttentionVariants, BackendRunsWindowedCascadeSteps) {
  std::mt19937 rng(13);
  auto be = make_cpu_backend();
  int multi_level = 0;
  for (int iter = 0; iter < 30; ++iter) {
    const Variant v{4, 2, 32, iter % 2 ? KVLayout::HND : KVLayout::NHD, 0.37f, 2.0f, 3 + iter * 2};
    SCOPED_TRACE(v.name());
    const auto sc = testing::shared_prefix_scenario(rng, 3, 3, 6, 6);
    Problem p = make_problem(sc.reqs, sc.num_pages, 3, v, CascadeMode::Always, rng);
    multi_level += p.step.levels.size() > 1;
    // k/v of the new tokens: what the pool already holds at their slots (the append rewrites it).
    const int64_t T = p.step.num_tokens, width = int64_t(v.Hk) * v.D;
    std::vector<float> k(size_t(T * width)), vv(k.size()), out(p.q.size(), kNaN);
    int64_t row = 0;
    for (const CascadeRequest& r : p.reqs)
      for (int t = r.kv_len - r.q_len; t < r.kv_len; ++t, ++row)
        for (int h = 0; h < v.Hk; ++h)
          for (int d = 0; d < v.D; ++d) {
            k[size_t(row * width + h * v.D + d)] = slot(p, r, t, 0, h, d);
            vv[size_t(row * width + h * v.D + d)] = slot(p, r, t, 1, h, d);
          }
    auto plan = be->plan_attention(p.step, p.shape);
    be->attention(*plan, Tensor(p.q.data(), {T, v.Hq * v.D}, DType::F32),
                  Tensor(k.data(), {T, width}, DType::F32),
                  Tensor(vv.data(), {T, width}, DType::F32),
                  Tensor(p.pool.data(), {int64_t(p.pool.size())}, DType::F32),
                  Tensor(out.data(), {T, v.Hq * v.D}, DType::F32));
    std::vector<double> ro, rl;
    reference(p, ro, rl);
    double num = 0, den = 0;
    for (size_t i = 0; i < ro.size(); ++i) {
      num += (out[i] - ro[i]) * (out[i] - ro[i]);
      den += ro[i] * ro[i];
    }
    EXPECT_LT(std::sqrt(num / den), 1e-5);
  }
  EXPECT_GT(multi_level, 5);
}

TEST(CpuAttentionVariants, BadVariantsAreRejectedByThePlan) {
  auto be = make_cpu_backend();
  AttentionStep step;
  step.num_tokens = 1;
  step.levels.resize(1);
  step.levels[0].add(1, {0}, 1, 16);
  AttentionShape s{2, 1, 16, 0.25f, KVCacheShape{1, 1, 16, 1, 16, KVLayout::NHD}};
  s.logits_soft_cap = -1.0f;
  EXPECT_THROW(be->plan_attention(step, s), Error);
  s.logits_soft_cap = 0.0f;
  s.window_left = -2;
  try {
    be->plan_attention(step, s);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("window_left -2"), std::string::npos) << e.what();
  }
  s.window_left = 0;
  EXPECT_NO_THROW(be->plan_attention(step, s));
}

TEST(CpuAttentionVariants, Avx2MatchesPortableBitForBit) {
  if (!cpu_isa_supported(CpuIsa::Avx2)) GTEST_SKIP() << "no AVX2 on this CPU";
  const attn::RowKernels avx2 = attn::avx2_rows();
  std::mt19937 rng(14);
  for (int D : {64, 40})  // whole 8-key blocks, and a head dim with a tail past the 16-lane groups
    for (int ps : {3, 16})
      for (int W : {-1, 0, 5, 13, 100}) {
        const Variant v{4, 2, D, ps == 3 ? KVLayout::HND : KVLayout::NHD, 0.19f, 2.0f, W};
        SCOPED_TRACE(v.name());
        const auto sc = testing::shared_prefix_scenario(rng, ps, 2, 5, 20);
        Problem p = make_problem(sc.reqs, sc.num_pages, ps, v, CascadeMode::Always, rng);
        std::vector<float> oa, la, ob, lb;
        run_levels(p, &avx2, oa, la);
        run_levels(p, &attn::kPortableRows, ob, lb);
        EXPECT_EQ(0, std::memcmp(oa.data(), ob.data(), oa.size() * sizeof(float)));
        EXPECT_EQ(0, std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)));
      }
}

}  // namespace
}  // namespace nc

// Cascade attention on the GPU over random prefix trees: 1 to 4 shared levels (the planner's
// levels, every shared node kept), empty entries, single-request groups, page sizes 1/16/64,
// prefill chunks and decodes mixed. The GPU's multi-level step must equal plain paged attention
// computed by the CPU backend (float32) on the same requests, within bf16 tolerance.
#include <algorithm>
#include <numeric>

#include "gpu_test_util.h"
#include "kv/cascade_planner.h"

namespace nc::testing {
namespace {

struct TreeProblem {
  std::vector<CascadeRequest> reqs;
  int num_pages = 0;
};

// Requests under a random tree: each inner node holds 1-3 pages shared by everything below it,
// each request adds its own tokens (some full pages and a partial one) with its new tokens last.
class TreeBuilder {
 public:
  TreeBuilder(std::mt19937& rng, int page_size) : rng_(rng), ps_(page_size) {}

  TreeProblem build(int depth) {
    TreeProblem p;
    grow({}, depth, p);
    p.num_pages = next_page_;
    return p;
  }

 private:
  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  void grow(std::vector<int32_t> path, int depth, TreeProblem& p) {
    const int n = uniform(1, ps_ >= 64 ? 2 : 3);
    for (int i = 0; i < n; ++i) path.push_back(next_page_++);
    if (depth == 0) {
      const int requests = uniform(1, 3);  // 1: a single-request group
      for (int r = 0; r < requests; ++r) p.reqs.push_back(request(path));
      return;
    }
    const int children = uniform(1, 3);
    for (int c = 0; c < children; ++c) {
      if (uniform(0, 4) == 0) {
        p.reqs.push_back(request(path));  // a request that ends at this depth
      } else {
        grow(path, uniform(0, depth - 1), p);
      }
    }
  }

  CascadeRequest request(const std::vector<int32_t>& shared) {
    CascadeRequest q;
    q.pages = shared;
    q.q_len = uniform(0, 2) == 0 ? uniform(2, 24) : 1;  // a prefill chunk or a decode
    const int own = q.q_len + uniform(0, 2 * ps_);
    q.kv_len = int(shared.size()) * ps_ + own;
    while (int64_t(q.pages.size()) * ps_ < q.kv_len) q.pages.push_back(next_page_++);
    return q;
  }

  std::mt19937& rng_;
  int ps_;
  int next_page_ = 0;
};

class CudaCascadeTree : public GpuVsCpu {};

TEST_F(CudaCascadeTree, RandomTreesEqualPlainAttention) {
  const int Hq = 16, Hk = 8, D = 128;
  std::mt19937 tree_rng(7);  // the trees alone (tests/test_cascade_planner.cc style shapes)
  std::vector<int> steps_with_shared(5, 0);  // by number of shared levels
  for (int ps : {1, 16, 64}) {
    for (int depth = 1; depth <= 4; ++depth) {
      for (int trial = 0; trial < 3; ++trial) {
        SCOPED_TRACE(::testing::Message()
                     << "page " << ps << " depth " << depth << " trial " << trial);
        TreeBuilder tb(tree_rng, ps);
        const TreeProblem tp = tb.build(depth);
        const CascadePlan cascade = CascadePlanner(ps, CascadeMode::Always).plan(tp.reqs);
        const CascadePlan plain = CascadePlanner(ps, CascadeMode::Off).plan(tp.reqs);
        ASSERT_EQ(plain.step.levels.size(), 1u);
        // Every request's query rows, in input order; the cascade step takes them in its order.
        const int n = int(tp.reqs.size());
        std::vector<int> first_row(n + 1, 0);
        for (int r = 0; r < n; ++r) first_row[r + 1] = first_row[r] + tp.reqs[r].q_len;
        const int T = first_row[n];
        auto rows = [&](const std::vector<float>& x, int width, const std::vector<int>& order) {
          std::vector<float> out;
          for (int r : order)
            out.insert(out.end(), x.begin() + int64_t(first_row[r]) * width,
                       x.begin() + int64_t(first_row[r + 1]) * width);
          return out;
        };
        const std::vector<float> q = random_vec(rng, size_t(T) * Hq * D),
                                 k = random_vec(rng, size_t(T) * Hk * D),
                                 v = random_vec(rng, size_t(T) * Hk * D);
        const KVCacheShape kv{1, tp.num_pages, ps, Hk, D, KVLayout::NHD};
        const AttentionShape shape{Hq, Hk, D, 1.0f / std::sqrt(float(D)), kv};
        HostTensor pages{{kv.num_pages, 2, ps, Hk, D},
                         random_vec(rng, size_t(kv.num_pages) * kv.elems_per_page())};
        auto run = [&](Backend& b, const CascadePlan& plan) {
          const std::vector<int>& o = plan.order;
          Tensor pool = b.upload(pages);
          Tensor out = b.upload(
              HostTensor{{T, Hq * D}, std::vector<float>(size_t(T) * Hq * D, std::nanf(""))});
          auto p = b.plan_attention(plan.step, shape);
          b.attention(*p, b.upload(HostTensor{{T, Hq * D}, rows(q, Hq * D, o)}),
                      b.upload(HostTensor{{T, Hk * D}, rows(k, Hk * D, o)}),
                      b.upload(HostTensor{{T, Hk * D}, rows(v, Hk * D, o)}), pool, out);
          // Back to input order.
          const std::vector<float> got = b.to_host_f32(out);
          std::vector<float> in_order(got.size());
          int row = 0;
          for (int r : o) {
            const int len = tp.reqs[r].q_len;
            std::copy_n(got.begin() + int64_t(row) * Hq * D, int64_t(len) * Hq * D,
                        in_order.begin() + int64_t(first_row[r]) * Hq * D);
            row += len;
          }
          return in_order;
        };
        const std::vector<float> ref = run(*cpu, plain);
        const std::vector<float> got = run(*gpu, cascade);
        EXPECT_LE(rel_error(got, ref), kBf16Tol)
            << cascade.stats.num_levels << " levels, " << n << " requests, " << T << " rows";
        ++steps_with_shared[std::min(cascade.stats.num_levels - 1, 4)];
      }
    }
  }
  // Every depth of sharing from 1 to 4 shared levels was exercised.
  for (int l = 1; l <= 4; ++l) EXPECT_GE(steps_with_shared[l], 1) << l << " shared levels";
}

}  // namespace
}  // namespace nc::testing

// LlamaModel with sparse decode attention (SparseOptions, ForwardInput::sparse_budgets) over the
// tiny Llama fixture: after a dense chunked prefill, decode steps with a small budget give the
// logits of a reference backend whose sparse_attention is dense attention() over the pages that
// select_pages keeps by bounds recomputed from the page contents (1e-5), only in the layers past
// the dense ones; the kept bounds equal the contents' min/max after every step; the logits differ
// from dense ones (the selection dropped pages) and equal them with budget 0; the bounds count in
// the page's bytes; bad options and budgets fail naming the value.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "backend/backend.h"
#include "core/error.h"
#include "forwarding_backend.h"
#include "golden.h"
#include "kv/page_bounds.h"
#include "model/llama.h"
#include "model/model_loader.h"

namespace nc {
namespace {

// The CPU backend, except that sparse_attention is the reference: dense attention over the
// selected step, with scores from bounds rebuilt from the pages' contents.
class RefSparseBackend : public testing::ForwardingBackend {
 public:
  int sparse_calls = 0;

  std::string name() const override { return "ref-sparse"; }

  struct Plan : AttentionPlan {
    AttentionStep step;
    AttentionShape shape;
    PageSelection sel;
  };
  std::unique_ptr<AttentionPlan> plan_sparse_attention(const AttentionStep& st,
                                                       const AttentionShape& sh,
                                                       const PageSelection& sel) override {
    auto p = std::make_unique<Plan>();
    p->step = st;
    p->shape = sh;
    p->sel = sel;
    return p;
  }
  void sparse_attention(const AttentionPlan& base, const Tensor& q, const Tensor& k,
                        const Tensor& v, Tensor pages, const Tensor& /*kept bounds*/,
                        Tensor out) override {
    ++sparse_calls;
    const auto& p = static_cast<const Plan&>(base);
    const KVCacheShape& kv = p.shape.kv;
    // Bounds from the contents: full pages, and the last page's slots before this step's append
    // (its bound never decides: the last page is always kept).
    PageBounds fresh(kv.num_pages, kv.num_kv_heads, kv.head_dim);
    const PagedKVBatch& own = p.step.levels.back();
    for (int b = 0; b < own.batch_size(); ++b)
      for (int i = 0; i < own.num_pages(b); ++i) {
        const int page = own.kv_indices[size_t(own.kv_indptr[b] + i)];
        const int slots = i + 1 < own.num_pages(b) ? kv.page_size : own.kv_last_page_len[size_t(b)];
        fresh.rebuild(page, pages.ptr<float>(), kv, slots);
      }
    const AttentionStep chosen = select_pages(
        p.step, decode_page_scores(p.step, fresh, q.ptr<float>(), p.shape.num_qo_heads), p.sel,
        kv.page_size, p.shape.window_left);
    in->attention(*in->plan_attention(chosen, p.shape), q, k, v, pages, out);
  }
};

constexpr int kPs = 4;

struct ModelRun {
  LoadedModel lm = load_model(testing::fixtures_dir() + "/tiny-llama");
  std::unique_ptr<LlamaModel> model;
  KVCache kv;
  ModelRun(Backend& be, const SparseOptions& o) {
    model = std::make_unique<LlamaModel>(lm.config, lm.weights, be);
    model->set_sparse_options(o);
    kv = model->make_kv_cache(64, kPs);
  }
};

// One entry of `n` new tokens at position `start` over pages 0.. (page i = id i + 3).
ForwardInput step_of(const std::vector<int32_t>& ids, int start, int budget) {
  ForwardInput in;
  const int n = int(ids.size()), len = start + n;
  in.token_ids = ids;
  for (int i = 0; i < n; ++i) in.positions.push_back(start + i);
  std::vector<int32_t> pages;
  for (int i = 0; i * kPs < len; ++i) pages.push_back(i + 3);
  PagedKVBatch b;
  b.add(n, pages, len, kPs);
  in.attention = {n, {b}};
  in.logit_rows = {n - 1};
  in.sparse_budgets = {budget};
  return in;
}

int argmax(const std::vector<float>& v) {
  return int(std::max_element(v.begin(), v.end()) - v.begin());
}

std::vector<int32_t> appended_pages_so_far(int len) {
  std::vector<int32_t> out;
  for (int i = 0; i * kPs < len; ++i) out.insert(out.end(), {i + 3, std::min(kPs, len - i * kPs)});
  return out;
}

TEST(ModelSparse, DecodeLogitsEqualDenseAttentionOverTheSelectedPages) {
  const SparseOptions o{true, 1, 8, 1};
  std::unique_ptr<Backend> cpu = make_cpu_backend(), dense_be = make_cpu_backend();
  RefSparseBackend ref_be;
  ModelRun sparse(*cpu, o), ref(ref_be, o), dense(*dense_be, o);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 101; ++i) prompt.push_back(int32_t((i * 37 + 11) % 500));
  int pos = 0;
  std::vector<float> ls, lr, ld;
  for (int start = 0; start < 101; start += 32) {  // chunked prefill: dense whatever the budget
    const std::vector<int32_t> chunk(prompt.begin() + start,
                                     prompt.begin() + std::min(101, start + 32));
    const ForwardInput in = step_of(chunk, start, 24);
    ls = sparse.model->forward(in, sparse.kv);
    lr = ref.model->forward(in, ref.kv);
    ld = dense.model->forward(step_of(chunk, start, 0), dense.kv);
    ASSERT_EQ(ls, ld) << "a prefill chunk went sparse";
    pos = start + int(chunk.size());
  }
  EXPECT_EQ(ref_be.sparse_calls, 0);
  double max_gap = 0;
  for (int t = 0; t < 12; ++t, ++pos) {
    const int32_t next = argmax(ls);
    ls = sparse.model->forward(step_of({next}, pos, 24), sparse.kv);
    lr = ref.model->forward(step_of({next}, pos, 24), ref.kv);
    ld = dense.model->forward(step_of({next}, pos, 0), dense.kv);
    ASSERT_EQ(ls.size(), lr.size());
    for (size_t i = 0; i < ls.size(); ++i) {
      ASSERT_NEAR(ls[i], lr[i], 1e-5f) << "step " << t << " logit " << i;
      max_gap = std::max(max_gap, double(std::fabs(ls[i] - ld[i])));
    }
    sparse.model->check_page_bounds(sparse.kv, appended_pages_so_far(pos + 1));
  }
  EXPECT_EQ(ref_be.sparse_calls, 12);  // one sparse layer (of 2) a decode step
  EXPECT_GT(max_gap, 1e-4) << "the selection changed nothing: the budget kept every page";
  const SparseCounts c = sparse.model->sparse_counts();
  // 102..113 tokens in 26..29 pages; 24 tokens a step: sink + 3 window/last pages + 2 more.
  EXPECT_EQ(c.pages_read, 12 * 6);
  EXPECT_GT(c.pages_skipped, 12 * 19);
}

TEST(ModelSparse, BudgetZeroAndLargeBudgetsAreDense) {
  std::unique_ptr<Backend> a = make_cpu_backend(), b = make_cpu_backend();
  ModelRun sparse(*a, SparseOptions{true, 1, 8, 1});
  ModelRun plain(*b, SparseOptions{});
  EXPECT_EQ(plain.kv.bounds.size(), 0u);
  ASSERT_EQ(sparse.kv.bounds.size(), 2u);
  EXPECT_FALSE(sparse.kv.bounds[0].defined());  // a dense layer keeps none
  EXPECT_TRUE(sparse.kv.bounds[1].defined());
  std::vector<int32_t> prompt(60, 7);
  for (int i = 0; i < 60; ++i) prompt[size_t(i)] = int32_t(i * 3 + 1);
  ForwardInput in = step_of(prompt, 0, 0);
  EXPECT_EQ(sparse.model->forward(in, sparse.kv), [&] {
    ForwardInput p = in;
    p.sparse_budgets.clear();
    return plain.model->forward(p, plain.kv);
  }());
  for (int budget : {0, 61, 200}) {
    ForwardInput d = step_of({5}, 60, budget);
    ForwardInput p = d;
    p.sparse_budgets.clear();
    EXPECT_EQ(sparse.model->forward(d, sparse.kv), plain.model->forward(p, plain.kv))
        << "budget " << budget;
  }
  // One sparse layer of two: 2 x 2 heads x 16 floats of bounds a page.
  EXPECT_EQ(sparse.model->bounds_bytes_per_page(), 2 * 2 * 16 * 4);
  EXPECT_EQ(plain.model->bounds_bytes_per_page(), 0);
}

template <typename F>
std::string error_of(F&& f, ErrorKind* kind = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (kind) *kind = e.kind();
    return e.what();
  }
  return "no error";
}

TEST(ModelSparse, BadOptionsAndBudgetsFailNamingTheValue) {
  std::unique_ptr<Backend> be = make_cpu_backend();
  ModelRun r(*be, SparseOptions{});
  ErrorKind kind{};
  EXPECT_NE(error_of(
                [&] {
                  r.model->set_sparse_options({true, 1, 8, 2});
                },
                &kind)
                .find("2 layers, not more than the 2 dense layers"),
            std::string::npos);
  EXPECT_EQ(kind, ErrorKind::Unsupported);
  EXPECT_NE(error_of([&] {
              r.model->set_sparse_options({true, -1, 8, 1});
            }).find("sink pages -1"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              r.model->forward(step_of({1}, 0, 16), r.kv);
            }).find("sparse budgets given but sparse attention is off"),
            std::string::npos);
  r.model->set_sparse_options({true, 1, 8, 1});
  r.kv = r.model->make_kv_cache(64, kPs);
  EXPECT_NE(error_of([&] {
              r.model->forward(step_of({1}, 0, 11), r.kv);
            }).find("sparse budget 11 below the sinks + window"),
            std::string::npos);
  const LoadedModel mla = load_model(testing::fixtures_dir() + "/tiny-deepseek-v2");
  LlamaModel m(mla.config, mla.weights, *be);
  EXPECT_NE(error_of(
                [&] {
                  m.set_sparse_options({true, 1, 8, 0});
                },
                &kind)
                .find("MLA"),
            std::string::npos);
  EXPECT_EQ(kind, ErrorKind::Unsupported);
}

}  // namespace
}  // namespace nc

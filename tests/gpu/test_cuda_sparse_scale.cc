// Sparse decode attention on the CUDA backend at long contexts (the selection kernel over 8k to
// 30k pages of one entry, thousands of exact ties) against the CPU rule, and its bad inputs:
// clear errors, nothing silently dense.
#include "sparse_test_util.h"

namespace nc::testing {
namespace {

struct LongCase {
  int ps;
  std::vector<int> lens;  // tokens per decode entry
  PageSelection sel;
  // kSmall: many ties; kFlat: every non-empty page bounds the same keys (one tie across all
  // candidates); kWide: scores spread, few or no ties at the threshold; kSkewed: small scores
  // with every 50th page's far larger, so the first coarse bins are crowded.
  enum Scores { kSmall, kFlat, kWide, kSkewed } scores = kSmall;
};

// Bounds straight from the host (no page contents needed for the selection): per (page, head,
// dim) min in [-4, 4] and max up to 3 above, so scores are exact (sparse_test_util.h) and many
// pages tie; every 97th page of the first entry stays empty (-inf). The other kinds of scores:
// LongCase::Scores.
PageBounds long_bounds(std::mt19937& rng, const KVCacheShape& kv, const PagedKVBatch& own,
                       LongCase::Scores scores) {
  const bool flat = scores == LongCase::kFlat;
  PageBounds b(kv.num_pages, kv.num_kv_heads, kv.head_dim);
  const size_t hd = size_t(kv.num_kv_heads) * kv.head_dim;
  std::vector<float> lo(hd), hi(hd);
  for (int p = 0; p < kv.num_pages; ++p) {
    const int i = p - own.kv_indptr[0];
    if (i >= 0 && i < own.num_pages(0) && i % 97 == 50) continue;
    const bool large = scores == LongCase::kWide || (scores == LongCase::kSkewed && p % 50 == 7);
    const int span = large ? 1000 : 4, gap = large ? 300 : 3;
    for (size_t x = 0; x < hd && !(flat && p > 0); ++x) {
      lo[x] = small_int(rng, -span, span);
      hi[x] = lo[x] + small_int(rng, 0, gap);
    }
    b.fold(p, lo.data());
    b.fold(p, hi.data());
  }
  return b;
}

class CudaSparseLong : public GpuVsCpu {
 protected:
  void check(const LongCase& c) {
    const int Hq = 8, Hk = 2, D = 64, ps = c.ps;
    SCOPED_TRACE("page " + std::to_string(ps));
    AttentionStep step;
    PagedKVBatch own;
    int next = 0;
    for (int len : c.lens) {
      std::vector<int32_t> pages((len + ps - 1) / ps);
      std::iota(pages.begin(), pages.end(), next);  // in order: page p is entry-local p - start
      next += int(pages.size());
      own.add(1, pages, len, ps);
    }
    step.num_tokens = own.batch_size();
    step.levels = {own};
    const AttentionShape shape{Hq, Hk, D, 0.125f, KVCacheShape{1, next, ps, Hk, D, KVLayout::NHD}};
    const PageBounds cb = long_bounds(rng, shape.kv, own, c.scores);
    Tensor bg = gpu->alloc({next, 2, Hk, D}, DType::F32);
    const std::vector<float> host_bounds = bounds_as_tensor(cb);
    gpu->copy_from_host(bg, host_bounds.data());
    Tensor pg = gpu->alloc(page_shape(shape.kv), DType::BF16);
    gpu->fill_uniform(pg, 3, -1.0f, 1.0f);
    const int T = step.num_tokens;
    Tensor kg = gpu->upload(HostTensor{{T, Hk * D}, random_vec(rng, size_t(T) * Hk * D)});
    Tensor vg = gpu->upload(HostTensor{{T, Hk * D}, random_vec(rng, size_t(T) * Hk * D)});
    Tensor og = gpu->alloc({T, Hq * D}, DType::BF16);
    auto plan = gpu->plan_sparse_attention(step, shape, c.sel);
    for (int layer = 0; layer < 2; ++layer) {
      const std::vector<float> q = exact_queries(rng, size_t(T) * Hq * D);
      int ties = 0;
      const AttentionStep want = expected_sparse_step(step, cb, q, Hq, c.sel, ps, &ties);
      if (c.scores != LongCase::kWide) {
        EXPECT_GT(ties, 0) << "layer " << layer << ": no tie across the boundary";
      }
      gpu->sparse_attention(*plan, gpu->upload(HostTensor{{T, Hq * D}, q}), kg, vg, pg, bg, og);
      const std::vector<int32_t> got = cuda_sparse_selected_pages(*plan);
      const PagedKVBatch& w = want.levels.back();
      ASSERT_EQ(got.size(), w.kv_indices.size()) << "layer " << layer;
      const std::string diff = page_list_diff(w, got);
      // The lists are long: the first 600 characters say where they part.
      EXPECT_TRUE(diff.empty()) << "layer " << layer << ": " << diff.substr(0, 600);
      const std::vector<float> out = gpu->to_host_f32(og);
      EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](float x) { return std::isfinite(x); }))
          << "layer " << layer << ": non-finite attention output";
    }
  }
};

TEST_F(CudaSparseLong, SelectionOverThousandsOfPagesMatchesTheCpuRule) {
  // 128k and 192k tokens in pages of 16 (8192, 12000 pages) beside a short entry.
  check(LongCase{16, {131072, 12000 * 16 - 5, 300 * 16}, PageSelection{2048, 2, 256}});
  // Page size 1: 30000 candidates in one entry, more than the selection keeps in shared memory
  // (it reads their scores each pass), beside one whose keys it does keep there.
  check(LongCase{1, {30000, 3000}, PageSelection{1024, 4, 64}});
  // Every candidate ties: more tied keys than the selection's coarse pass takes (its fallback).
  check(LongCase{16, {65536, 300 * 16}, PageSelection{2048, 2, 256}, LongCase::kFlat});
  // Scores spread wide: the threshold's coarse bin holds few keys (ranked by one warp).
  check(LongCase{16, {131072, 32768, 300 * 16}, PageSelection{2048, 2, 256}, LongCase::kWide});
  // A few large scores stretch the range: the bins are laid again over the crowded one.
  check(LongCase{16, {131072, 32768, 300 * 16}, PageSelection{8192, 2, 256}, LongCase::kSkewed});
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST_F(GpuVsCpu, SparseAttentionRefusesBadInput) {
  const int Hq = 4, Hk = 2, D = 128, ps = 16;
  AttentionShape shape{Hq, Hk, D, 0.1f, KVCacheShape{1, 64, ps, Hk, D, KVLayout::NHD}};
  AttentionStep step;
  step.num_tokens = 1;
  step.levels.resize(1);
  std::vector<int32_t> pages(40);
  std::iota(pages.begin(), pages.end(), 0);
  step.levels[0].add(1, pages, 40 * ps, ps);
  auto has = [](const std::string& msg, const char* part) {
    return msg.find(part) != std::string::npos ? ::testing::AssertionSuccess()
                                               : ::testing::AssertionFailure() << msg;
  };
  EXPECT_TRUE(has(error_of([&] {
                    gpu->plan_sparse_attention(step, shape, {40, 2, 16});
                  }),
                  "token budget 40 below"));
  AttentionShape windowed = shape;
  windowed.window_left = 255;
  EXPECT_TRUE(has(error_of([&] {
                    gpu->plan_sparse_attention(step, windowed, {256, 1, 16});
                  }),
                  "window_left 255"));

  Tensor pg = gpu->alloc(page_shape(shape.kv), DType::BF16);
  Tensor q = gpu->alloc({1, Hq * D}, DType::BF16), k = gpu->alloc({1, Hk * D}, DType::BF16);
  Tensor v = gpu->alloc({1, Hk * D}, DType::BF16), out = gpu->alloc({1, Hq * D}, DType::BF16);
  Tensor bounds = empty_bounds(*gpu, shape.kv);
  auto dense = gpu->plan_attention(step, shape);
  EXPECT_TRUE(has(error_of([&] { gpu->sparse_attention(*dense, q, k, v, pg, bounds, out); }),
                  "not a CUDA sparse plan"));
  auto sparse = gpu->plan_sparse_attention(step, shape, {256, 1, 16});
  EXPECT_TRUE(
      has(error_of([&] { gpu->attention(*sparse, q, k, v, pg, out); }), "runs sparse_attention"));
  Tensor bad_bounds = gpu->alloc({64, 2, Hk, D}, DType::BF16);
  EXPECT_TRUE(has(error_of([&] { gpu->sparse_attention(*sparse, q, k, v, pg, bad_bounds, out); }),
                  "sparse_attention bounds"));
  Tensor short_bounds = gpu->alloc({32, 2, Hk, D}, DType::F32);
  EXPECT_TRUE(has(error_of([&] { gpu->sparse_attention(*sparse, q, k, v, pg, short_bounds, out); }),
                  "sparse_attention bounds"));
  Tensor slots = gpu->alloc({3}, DType::I32);
  EXPECT_TRUE(
      has(error_of([&] { gpu->update_page_bounds(pg, shape.kv, slots, bounds); }), "not [P, 2]"));
  // An fp8 cache's bounds read e4m3 pages (test_cuda_fp8_kv_cache.cc): bf16 pages are refused.
  KVCacheShape fp8 = shape.kv;
  fp8.fp8 = true;
  Tensor slots2 = gpu->alloc({3, 2}, DType::I32);
  EXPECT_TRUE(has(error_of([&] { gpu->update_page_bounds(pg, fp8, slots2, bounds); }),
                  "update_page_bounds pages: expected dtype"));
}

}  // namespace
}  // namespace nc::testing

// The CUDA backend's host-side bookkeeping that needs no device: how a staging region is laid
// out (StagingLayout, StagedArray, StagingView), when a graph slot counts as the same shape
// (SlotShape), and that the sampler's parameter block and the graph cascade scratch hold exactly
// the bytes at the offsets the code before the split (bc7cdba) gave the kernels. These run
// without a GPU.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "backend/cuda/cuda_graph_slots.h"
#include "backend/sampler_params.h"
#include "core/error.h"

namespace nc::cuda_host {
namespace {

TEST(CudaHostLayout, StagingLayoutAlignsEveryArray) {
  StagingLayout lay;  // 16-byte alignment, as plan metadata uses
  const StagedArray<int32_t> a = lay.add<int32_t>(3);
  const StagedArray<int32_t> b = lay.add<int32_t>(5);
  const StagedArray<std::byte> c = lay.add<std::byte>(1);
  EXPECT_EQ(a.offset, 0u);
  EXPECT_EQ(a.bytes(), 12u);
  EXPECT_EQ(b.offset, 16u);
  EXPECT_EQ(c.offset, 48u);  // 16 + 20, rounded up to 16
  EXPECT_EQ(lay.size(), 64u);
  StagingLayout wide(256);  // the graph scratch's alignment
  EXPECT_EQ(wide.add<float>(0).offset, 0u);
  EXPECT_EQ(wide.add<float>(10).offset, 0u) << "an empty array takes no room";
  EXPECT_EQ(wide.add<float>(1).offset, 256u);
}

TEST(CudaHostLayout, StagingViewPutsArraysAtTheirOffsets) {
  std::vector<std::byte> host(64), dev(64);
  StagingView view;
  view.host = reinterpret_cast<char*>(host.data());
  view.dev = reinterpret_cast<char*>(dev.data());
  StagingLayout lay;
  lay.add<int32_t>(2);
  const StagedArray<int32_t> a = lay.add<int32_t>(3);
  view.put(a, {7, 8, 9});
  EXPECT_EQ(view.host_ptr(a)[0], 7);
  EXPECT_EQ(view.host_ptr(a)[2], 9);
  EXPECT_EQ(reinterpret_cast<char*>(view.dev_ptr(a)) - view.dev, 16);
  EXPECT_THROW(view.put(a, {1, 2, 3, 4}), Error) << "more values than the array holds";
}

TEST(CudaHostLayout, SlotShapeComesFromTheLastQuery) {
  std::vector<cuda::PlanQuery> q(2);
  q[1].batch_size = 8;
  q[1].num_qo_heads = 16;
  q[1].num_kv_heads = 4;
  q[1].head_dim = 128;
  q[1].page_size = 16;
  const SlotShape s = SlotShape::of(q, 32);
  EXPECT_EQ(s.levels, 2);
  EXPECT_EQ(s.batch, 8);
  EXPECT_EQ(s.max_pages, 32);
  EXPECT_EQ(s, SlotShape::of(q, 32));
  EXPECT_NE(s, SlotShape::of(q, 64));
  EXPECT_NE(s, SlotShape{}) << "a slot not made yet fits nothing";
}

// The pre-split packing of sample_tokens_async: 7 words a row by column (seeds as two words
// first), unfiltered rows with top-k = vocab, top-p = 1, min-p = -1.
std::vector<uint32_t> presplit_param_words(const std::vector<RowSampling>& rows, int V) {
  const size_t n = rows.size();
  std::vector<uint32_t> host(n * 7);
  auto put_f32 = [&](size_t col, size_t r, float v) { std::memcpy(&host[col * n + r], &v, 4); };
  for (size_t r = 0; r < n; ++r) {
    const RowSampling& p = rows[r];
    const bool f = p.filtered();
    std::memcpy(&host[2 * r], &p.seed, 8);
    put_f32(2, r, p.inv_temperature);
    put_f32(3, r, p.inv_temperature == 0 ? 1.0f : 1.0f / p.inv_temperature);
    host[4 * n + r] = uint32_t(f && p.top_k > 0 && p.top_k < V ? p.top_k : V);
    put_f32(5, r, f ? p.top_p : 1.0f);
    put_f32(6, r, f ? p.min_p : -1.0f);
  }
  return host;
}

TEST(CudaHostLayout, SamplerBlockIsThePresplitUploadByteForByte) {
  const int V = 1000;
  const std::vector<RowSampling> all = {
      RowSampling{0.0f, 11, 5, 0.5f, 0.1f},      // greedy, filters ignored
      RowSampling{0.7f, 0xFFFFFFFF00000001ull},  // plain, a seed using both words
      RowSampling{2.0f, 3, 40, 0.9f, 0.05f},     // filtered
      RowSampling{1.0f, 4, V, 0.95f, 0.0f},      // top-k = vocab: off
      RowSampling{1.0f, 5, 0, 1.0f, 0.2f},       // min-p only
      RowSampling{0.25f, 6, 1, 0.5f, 0.0f},      // top-k 1
      RowSampling{1.5f, 7, -1, 0.3f, 0.0f}};     // top-k < 0: off
  for (size_t n = 1; n <= all.size(); ++n) {
    const std::vector<RowSampling> rows(all.begin(), all.begin() + std::ptrdiff_t(n));
    std::vector<SamplerRow> typed;
    for (const RowSampling& p : rows) typed.push_back(SamplerRow::from(p, V));
    const SamplerParamBlock block(typed);
    const std::vector<uint32_t> want = presplit_param_words(rows, V);
    ASSERT_EQ(block.bytes(), want.size() * 4) << n << " rows";
    EXPECT_EQ(std::memcmp(block.data(), want.data(), block.bytes()), 0) << n << " rows";
    // The columns the kernels are given: the same word offsets as before.
    const auto* w = static_cast<const uint32_t*>(block.data());
    const SamplerColumns c = block.columns(w);
    EXPECT_EQ(static_cast<const void*>(c.inv_temperature), w + 2 * n);
    EXPECT_EQ(static_cast<const void*>(c.temperature), w + 3 * n);
    EXPECT_EQ(static_cast<const void*>(c.top_k), w + 4 * n);
    EXPECT_EQ(static_cast<const void*>(c.top_p), w + 5 * n);
    EXPECT_EQ(static_cast<const void*>(c.min_p), w + 6 * n);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(block.data()) % 8, 0u) << "seeds are 8-byte aligned";
  }
}

// plan_for_graph carves the graph scratch as [shared split-KV | out | out2 | lse x 3], each part
// 256-byte aligned: the same offsets and total as the pre-split arithmetic.
TEST(CudaHostLayout, GraphCascadeCarveMatchesThePresplitOffsets) {
  for (size_t shared_ws : {size_t(0), size_t(1), size_t(4096), size_t(123457)}) {
    for (size_t rows : {size_t(1), size_t(7 * 14), size_t(256 * 32)}) {
      for (size_t head_dim : {size_t(64), size_t(128)}) {
        const size_t out_bytes = align_up(rows * head_dim * 2, 256),
                     lse_bytes = align_up(rows * 4, 256), ws_bytes = align_up(shared_ws, 256);
        StagingLayout lay(256);
        const auto ws = lay.add<std::byte>(shared_ws);
        const auto out = lay.add<std::byte>(rows * head_dim * 2);
        const auto out2 = lay.add<std::byte>(rows * head_dim * 2);
        const auto lse_main = lay.add<float>(rows), lse_level = lay.add<float>(rows),
                   lse_level2 = lay.add<float>(rows);
        EXPECT_EQ(ws.offset, 0u);
        EXPECT_EQ(out.offset, ws_bytes);
        EXPECT_EQ(out2.offset, ws_bytes + out_bytes);
        EXPECT_EQ(lse_main.offset, ws_bytes + 2 * out_bytes);
        EXPECT_EQ(lse_level.offset, ws_bytes + 2 * out_bytes + lse_bytes);
        EXPECT_EQ(lse_level2.offset, ws_bytes + 2 * out_bytes + 2 * lse_bytes);
        EXPECT_EQ(lay.size(), ws_bytes + 2 * out_bytes + 3 * lse_bytes);
      }
    }
  }
}

}  // namespace
}  // namespace nc::cuda_host

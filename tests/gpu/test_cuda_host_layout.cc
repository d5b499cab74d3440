// The CUDA backend's host-side bookkeeping that needs no device: how a staging region is laid
// out (StagingLayout, StagedArray, StagingView) and when a graph slot counts as the same shape
// (SlotShape). These run without a GPU.
#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

#include "backend/cuda/cuda_graph_slots.h"
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

}  // namespace
}  // namespace nc::cuda_host

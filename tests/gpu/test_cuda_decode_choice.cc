// DecodeKernel::Auto's table (decode_choice.h): its rows are well formed, its default is the rule
// measured on the H100 (tensor cores from GQA group 4), and Auto plans follow it per batch and
// context (the choice a plan reports is the table's).
#include <gtest/gtest.h>

#include <numeric>

#include "backend/cuda/decode_choice.h"
#include "gpu_test_util.h"

namespace nc::testing {
namespace {

using cuda_host::auto_decode_kernel;

TEST(CudaDecodeChoice, RulesAreWellFormed) {
  ASSERT_FALSE(cuda_host::decode_rules().empty());
  for (const cuda_host::DecodeRule& r : cuda_host::decode_rules()) {
    EXPECT_GE(r.min_group, 1);
    EXPECT_TRUE(r.max_group == 0 || r.max_group >= r.min_group);
    EXPECT_TRUE(r.max_batch == 0 || r.max_batch >= r.min_batch);
    EXPECT_TRUE(r.max_ctx == 0 || r.max_ctx >= r.min_ctx);
    EXPECT_TRUE(r.kernel == DecodeKernel::CudaCores || r.kernel == DecodeKernel::TensorCores);
  }
}

TEST(CudaDecodeChoice, FirstMatchingRuleDecides) {
  // Every probe gets the kernel of the first rule containing it, else CUDA cores.
  for (int group : {1, 2, 3, 4, 8, 16})
    for (int batch : {1, 16, 64, 256})
      for (int ctx : {100, 2048, 8192}) {
        DecodeKernel want = DecodeKernel::CudaCores;
        for (const cuda_host::DecodeRule& r : cuda_host::decode_rules()) {
          auto in = [](int v, int lo, int hi) { return v >= lo && (hi == 0 || v <= hi); };
          if (in(group, r.min_group, r.max_group) && (r.head_dim == 0 || r.head_dim == 128) &&
              in(batch, r.min_batch, r.max_batch) && in(ctx, r.min_ctx, r.max_ctx)) {
            want = r.kernel;
            break;
          }
        }
        EXPECT_EQ(auto_decode_kernel(group, 128, batch, ctx), want)
            << group << " " << batch << " " << ctx;
      }
}

// An Auto plan of `batch` one-row entries of `ctx` keys runs what the table says.
TEST(CudaDecodeChoice, AutoPlansFollowTheTable) {
  auto gpu = make_cuda_backend(0);
  const int D = 128, ps = 16;
  for (auto [hq, hk] : {std::pair{8, 8}, std::pair{16, 8}, std::pair{32, 8}, std::pair{32, 4}})
    for (int batch : {1, 16, 64})
      for (int ctx : {64, 2048}) {
        const int pps = ctx / ps;
        AttentionShape shape{hq, hk, D, 0.088f,
                             KVCacheShape{1, batch * pps, ps, hk, D, KVLayout::NHD}};
        AttentionStep step;
        step.num_tokens = batch;
        PagedKVBatch b;
        for (int r = 0; r < batch; ++r) {
          std::vector<int32_t> pages(size_t(pps), 0);
          std::iota(pages.begin(), pages.end(), r * pps);
          b.add(1, pages, ctx, ps);
        }
        step.levels = {b};
        const bool cc = cuda_plan_uses_decode_kernel(*gpu->plan_attention(step, shape))[0];
        EXPECT_EQ(cc, auto_decode_kernel(hq / hk, D, batch, ctx) == DecodeKernel::CudaCores)
            << hq << "/" << hk << " batch " << batch << " ctx " << ctx;
      }
}

}  // namespace
}  // namespace nc::testing

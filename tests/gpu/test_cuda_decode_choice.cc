// DecodeKernel::Auto's tables (decode_choice.h): their rows are well formed, Auto plans follow
// the eager table per batch and context (the choice a plan reports is the table's), and graph-safe
// plans run either kernel (forced by option) and replay to the eager plan's output.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

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

TEST(CudaDecodeChoice, GraphRulesAreWellFormed) {
  for (const cuda_host::DecodeRule& r : cuda_host::graph_decode_rules()) {
    EXPECT_GE(r.min_group, 1);
    EXPECT_TRUE(r.max_group == 0 || r.max_group >= r.min_group);
    EXPECT_TRUE(r.max_batch == 0 || r.max_batch >= r.min_batch);
    EXPECT_TRUE(r.kernel == DecodeKernel::CudaCores || r.kernel == DecodeKernel::TensorCores);
  }
}

void upload_bf16(Backend& b, const Tensor& t, const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
  b.copy_from_host(t, h.data());
}

// Decode steps planned into one graph slot with the own level on either kernel (forced by
// option), captured once and replayed over new contexts: the same output as an eager plan of the
// same step (and the same appended K/V), and the kernel the option asks for. GQA group 7
// (Qwen2.5-7B's 28/4), which FlashInfer's decode has no instance for, is planned on FA2 under
// either option, as eager plans are, instead of running without graphs.
TEST(CudaDecodeChoice, GraphPlansOnEitherKernelMatchEager) {
  std::mt19937 rng(19);
  const int D = 128, ps = 16, B = 8, max_pages = 24, num_pages = B * max_pages;
  for (DecodeKernel kernel : {DecodeKernel::CudaCores, DecodeKernel::TensorCores})
    for (auto [hq, hk] : {std::pair{32, 8}, std::pair{16, 8}, std::pair{28, 4}}) {
      SCOPED_TRACE(::testing::Message()
                   << (kernel == DecodeKernel::CudaCores ? "cc " : "tc ") << hq << "/" << hk);
      CudaBackendOptions opt;
      opt.decode_kernel = kernel;
      auto g = make_cuda_backend(0, opt);
      const AttentionShape shape{hq, hk, D, 1.0f / std::sqrt(float(D)),
                                 KVCacheShape{1, num_pages, ps, hk, D, KVLayout::NHD}};
      HostTensor pages{{num_pages, 2, ps, hk, D},
                       random_vec(rng, size_t(num_pages) * shape.kv.elems_per_page())};
      Tensor pool_graph = g->upload(pages), pool_eager = g->upload(pages);
      Tensor q = g->alloc({B, hq * D}, DType::BF16), k = g->alloc({B, hk * D}, DType::BF16),
             v = g->alloc({B, hk * D}, DType::BF16), og = g->alloc({B, hq * D}, DType::BF16),
             oe = g->alloc({B, hq * D}, DType::BF16);
      std::uniform_int_distribution<int> len(1, max_pages * ps);
      for (int round = 0; round < 4; ++round) {
        AttentionStep step;
        step.num_tokens = B;
        PagedKVBatch own;
        for (int b = 0; b < B; ++b) {
          const int n = len(rng), np = (n + ps - 1) / ps;
          std::vector<int32_t> ids(size_t(np), 0);
          std::iota(ids.begin(), ids.end(), b * max_pages);
          own.add(1, ids, n, ps);
        }
        step.levels = {own};
        upload_bf16(*g, q, random_vec(rng, size_t(B) * hq * D));
        upload_bf16(*g, k, random_vec(rng, size_t(B) * hk * D));
        upload_bf16(*g, v, random_vec(rng, size_t(B) * hk * D));
        auto plan = g->plan_attention_graph(step, shape, 0, max_pages);
        ASSERT_NE(plan, nullptr) << "round " << round;
        EXPECT_EQ(cuda_plan_uses_decode_kernel(*plan)[0],
                  kernel == DecodeKernel::CudaCores && hq / hk != 7);
        if (round == 0) {
          g->attention(*plan, q, k, v, pool_graph, og);  // as the decoder: eager, then recorded
          g->begin_capture();
          g->attention(*plan, q, k, v, pool_graph, og);
          g->end_capture(0);
        }
        g->replay(0);
        g->attention(*g->plan_attention(step, shape), q, k, v, pool_eager, oe);
        EXPECT_LE(rel_error(g->to_host_f32(og), g->to_host_f32(oe)), kBf16Tol) << round;
        EXPECT_EQ(g->to_host_f32(pool_graph), g->to_host_f32(pool_eager)) << round;
      }
    }
}

}  // namespace
}  // namespace nc::testing

// Attention variants on the CUDA backend (FlashInfer's DefaultAttention flags through the kernel
// registry) against the CPU backend: sliding window, logit soft cap, both, a custom sm_scale; on
// decode and prefill levels, cascade steps (soft cap on every level, window on the own level
// only), a window-trimmed own entry, CUDA graph replays, two live plans of different kinds, and
// head_dim 256 through the JIT (its objects come from NC_JIT_CACHE when it holds them) and 96 on
// our own kernel (more at head_dim 96: test_cuda_attention_hd96.cc).
#include <cmath>
#include <numeric>

#include "backend/cuda/attn_registry.h"
#include "gpu_test_util.h"

namespace nc::testing {
namespace {

struct Variant {
  const char* name;
  int window_left;
  float soft_cap;
  float sm_scale;  // 0: 1/sqrt(D)
};

const Variant kVariants[] = {{"window", 37, 0.0f, 0.0f},
                             {"soft_cap", -1, 4.0f, 0.0f},
                             {"window+soft_cap", 50, 4.0f, 0.0f},
                             {"sm_scale", -1, 0.0f, 0.3f}};

AttentionShape make_shape(int Hq, int Hk, int D, int ps, int num_pages, const Variant& v) {
  AttentionShape s{Hq, Hk, D, v.sm_scale > 0 ? v.sm_scale : 1.0f / std::sqrt(float(D)),
                   KVCacheShape{1, num_pages, ps, Hk, D, KVLayout::NHD}};
  s.window_left = v.window_left;
  s.logits_soft_cap = v.soft_cap;
  return s;
}

// One level over `batch` requests with consecutive pages: decode (one new row each) or prefill
// chunks (1..48 new rows over 0..200 earlier tokens).
AttentionStep one_level(std::mt19937& rng, int batch, int ps, bool decode, int* num_pages) {
  std::uniform_int_distribution<int> q_dist(1, 48), ctx_dist(0, 200), dec_ctx(20, 400);
  AttentionStep step;
  PagedKVBatch own;
  int next = 0;
  for (int b = 0; b < batch; ++b) {
    const int q_len = decode ? 1 : q_dist(rng);
    const int len = decode ? dec_ctx(rng) : q_len + ctx_dist(rng);
    std::vector<int32_t> pages((len + ps - 1) / ps);
    std::iota(pages.begin(), pages.end(), next);
    next += int(pages.size());
    own.add(q_len, pages, len, ps);
    step.num_tokens += q_len;
  }
  step.levels = {own};
  *num_pages = next + 2;
  return step;
}

class CudaVariants : public GpuVsCpu {
 protected:
  // Runs `step` on both backends with random pages, q (times q_scale, so that soft caps bite), k
  // and v; returns the GPU output's relative error and checks the pools agree.
  double run_both(Backend& g, const AttentionStep& step, const AttentionShape& shape,
                  float q_scale = 3.0f, const AttentionStep* cpu_step = nullptr) {
    const int T = step.num_tokens, Hq = shape.num_qo_heads, Hk = shape.num_kv_heads,
              D = shape.head_dim;
    const KVCacheShape& kv = shape.kv;
    HostTensor pages{{kv.num_pages, 2, kv.page_size, Hk, D},
                     random_vec(rng, size_t(kv.num_pages) * kv.elems_per_page())};
    HostTensor q{{T, Hq * D}, random_vec(rng, size_t(T) * Hq * D, q_scale)};
    HostTensor k{{T, Hk * D}, random_vec(rng, size_t(T) * Hk * D)};
    HostTensor v{{T, Hk * D}, random_vec(rng, size_t(T) * Hk * D)};
    HostTensor nan{{T, Hq * D}, std::vector<float>(size_t(T) * Hq * D, std::nanf(""))};
    Tensor pc = cpu->upload(pages), pg = g.upload(pages);
    Tensor oc = cpu->upload(nan), og = g.upload(nan);
    cpu->attention(*cpu->plan_attention(cpu_step ? *cpu_step : step, shape), cpu->upload(q),
                   cpu->upload(k), cpu->upload(v), pc, oc);
    g.attention(*g.plan_attention(step, shape), g.upload(q), g.upload(k), g.upload(v), pg, og);
    if (cpu_step == nullptr) {
      EXPECT_EQ(g.to_host_f32(pg), cpu->to_host_f32(pc));
    }
    return rel_error(g.to_host_f32(og), cpu->to_host_f32(oc));
  }
  void check_graph_kinds(int D, bool cascade);
};

TEST_F(CudaVariants, DecodeAndPrefillLevels) {
  for (DecodeKernel dk : {DecodeKernel::CudaCores, DecodeKernel::TensorCores}) {
    CudaBackendOptions opt;
    opt.decode_kernel = dk;
    std::unique_ptr<Backend> g = make_cuda_backend(0, opt);
    for (const Variant& v : kVariants)
      for (bool decode : {true, false}) {
        SCOPED_TRACE(::testing::Message()
                     << v.name << (decode ? " decode" : " prefill") << " kernel " << int(dk));
        int num_pages = 0;
        const AttentionStep step = one_level(rng, 5, 16, decode, &num_pages);
        const AttentionShape shape = make_shape(4, 2, 128, 16, num_pages, v);
        EXPECT_EQ(cuda_plan_uses_decode_kernel(*g->plan_attention(step, shape))[0],
                  decode && dk == DecodeKernel::CudaCores);
        EXPECT_LE(run_both(*g, step, shape), kBf16Tol);
      }
  }
}

// A windowed decode whose own entry keeps only the pages the window reaches (as window_view
// cuts it) equals the CPU's result over the whole entry: the mask is relative to the entry's end.
TEST_F(CudaVariants, WindowOverATrimmedEntry) {
  const int ps = 16, W = 100, B = 3;
  std::unique_ptr<Backend> g = make_cuda_backend(0, {});
  AttentionStep full, cut;
  full.num_tokens = cut.num_tokens = B;
  PagedKVBatch lf, lc;
  int next = 0;
  for (int b = 0; b < B; ++b) {
    const int len = 900 + 37 * b;
    std::vector<int32_t> pages((len + ps - 1) / ps);
    std::iota(pages.begin(), pages.end(), next);
    next += int(pages.size());
    lf.add(1, pages, len, ps);
    const int first = (len - 1 - W) / ps;  // the first page the last row's window touches
    lc.add(1, std::vector<int32_t>(pages.begin() + first, pages.end()), len - first * ps, ps);
  }
  full.levels = {lf};
  cut.levels = {lc};
  const AttentionShape shape = make_shape(4, 2, 128, ps, next, {"window", W, 0.0f, 0.0f});
  EXPECT_LE(run_both(*g, cut, shape, 3.0f, &full), kBf16Tol);
}

// Cascade steps: the soft cap applies on the shared levels too; a window that covers the shared
// prefix (as window_view guarantees) masks the own level only.
TEST_F(CudaVariants, CascadeSteps) {
  for (bool overlap : {false, true})
    for (const Variant& v : kVariants) {
      SCOPED_TRACE(::testing::Message() << v.name << " overlap " << overlap);
      CudaBackendOptions opt;
      opt.overlap_cascade_levels = overlap;
      opt.decode_kernel = DecodeKernel::CudaCores;
      std::unique_ptr<Backend> g = make_cuda_backend(0, opt);
      SharedPrefixDecode d = shared_prefix_decode(rng, 4, 2, 128, 16, 6, 8, 40);
      const AttentionShape shape = make_shape(4, 2, 128, 16, d.shape.kv.num_pages, v);
      // The window must reach back to the prefix's first token from every row.
      AttentionShape sh = shape;
      if (sh.window_left >= 0) sh.window_left = 8 * 16 + 40;
      EXPECT_LE(run_both(*g, d.casc, sh, 3.0f, &d.plain), kBf16Tol);
    }
}

// Soft-capped shared levels of >= 128 rows run on the Hopper kernel where the GPU has it
// (FlashInfer's LogitsSoftCap variant, attn_prefill_sm90.cu), with and without its KV split (a
// 128- and a 4096-token prefix), NHD and HND, head_dim 64 and 128; FA2 when told so. All match.
TEST_F(CudaVariants, SoftCappedSharedLevelsOnTheHopperKernel) {
  for (SharedLevelKernel kernel : {SharedLevelKernel::Auto, SharedLevelKernel::FA2})
    for (int D : {64, 128})
      for (int prefix_pages : {8, 256})
        for (KVLayout layout : {KVLayout::NHD, KVLayout::HND}) {
          SCOPED_TRACE(::testing::Message()
                       << "fa2 " << (kernel == SharedLevelKernel::FA2) << " D " << D
                       << " prefix pages " << prefix_pages << " HND " << (layout == KVLayout::HND));
          CudaBackendOptions opt;
          opt.shared_level_kernel = kernel;
          std::unique_ptr<Backend> g = make_cuda_backend(0, opt);
          SharedPrefixDecode d = shared_prefix_decode(rng, 4, 2, D, 16, 160, prefix_pages, 20);
          AttentionShape sh = make_shape(4, 2, D, 16, d.shape.kv.num_pages, kVariants[1]);
          sh.kv.layout = layout;
          const bool sm90 =
              kernel != SharedLevelKernel::FA2 && cuda::sm90_prefill_available(4, 2, D);
          EXPECT_EQ(cuda_plan_uses_sm90_prefill(*g->plan_attention(d.casc, sh))[0], sm90);
          EXPECT_LE(run_both(*g, d.casc, sh, 3.0f, &d.plain), kBf16Tol);
        }
}

// head_dim 256 through the JIT, 96 on our own kernel (attn_generic.h; FlashInfer's FA2 prefill
// faults at 96 and its decode wants a power of two); a head dim nothing serves is refused by name.
TEST_F(CudaVariants, HeadDim256ThroughTheJitAnd96OnOurKernel) {
  CudaBackendOptions opt;
  opt.decode_kernel = DecodeKernel::CudaCores;
  std::unique_ptr<Backend> g = make_cuda_backend(0, opt);
  {
    int num_pages = 0;
    const AttentionStep step = one_level(rng, 4, 16, false, &num_pages);
    try {
      g->plan_attention(step, make_shape(8, 4, 80, 16, num_pages, kVariants[0]));
      ADD_FAILURE() << "head_dim 80 planned";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("head_dim 80"), std::string::npos) << e.what();
    }
  }
  for (int D : {96, 256})
    for (const Variant& v : {Variant{"plain", -1, 0.0f, 0.0f}, kVariants[2]})
      for (bool decode : {true, false}) {
        SCOPED_TRACE(::testing::Message() << "D=" << D << " " << v.name << " decode " << decode);
        int num_pages = 0;
        const AttentionStep step = one_level(rng, 4, 16, decode, &num_pages);
        const AttentionShape shape = make_shape(8, 4, D, 16, num_pages, v);
        const std::unique_ptr<AttentionPlan> plan = g->plan_attention(step, shape);
        EXPECT_EQ(cuda_plan_uses_decode_kernel(*plan)[0], decode && D == 256);
        EXPECT_EQ(cuda_plan_uses_generic_kernel(*plan)[0], D == 96);
        EXPECT_LE(run_both(*g, step, shape), kBf16Tol);
      }
  EXPECT_GT(g->kernel_builds().compiles + g->kernel_builds().cache_hits, 0);
}

// Two live plans of different kinds (a windowed layer's and a global one's, as Gemma alternates
// them), each in its own graph slot: captured, then replayed in turn, each equals the CPU. One
// level, or a 2-level cascade (the window then covers the prefix, as window_view guarantees).
void CudaVariants::check_graph_kinds(int D, bool cascade) {
  SCOPED_TRACE(::testing::Message() << "D=" << D << " cascade " << cascade);
  const int ps = 16, max_pages = 40, Hq = 4, Hk = 2;
  std::unique_ptr<Backend> g = make_cuda_backend(0, {});
  std::mt19937 step_rng(7);
  SharedPrefixDecode d = shared_prefix_decode(step_rng, Hq, Hk, D, ps, 8, 6, 40);
  int num_pages = d.shape.kv.num_pages;
  if (!cascade) d.casc = d.plain = one_level(step_rng, 8, ps, true, &num_pages);
  const int B = d.plain.num_tokens;
  AttentionShape win = make_shape(Hq, Hk, D, ps, num_pages, kVariants[2]);
  if (cascade) win.window_left = 6 * ps + 40;
  const AttentionShape glob = make_shape(Hq, Hk, D, ps, num_pages, kVariants[1]);
  HostTensor pages{{num_pages, 2, ps, Hk, D},
                   random_vec(rng, size_t(num_pages) * win.kv.elems_per_page())};
  const std::vector<float> q = random_vec(rng, size_t(B) * Hq * D, 3.0f),
                           k = random_vec(rng, size_t(B) * Hk * D),
                           v = random_vec(rng, size_t(B) * Hk * D);
  Tensor qg = g->upload({{B, Hq * D}, q}), kg = g->upload({{B, Hk * D}, k}),
         vg = g->upload({{B, Hk * D}, v});
  Tensor pg = g->upload(pages);
  Tensor outs[2] = {g->alloc({B, Hq * D}, DType::BF16), g->alloc({B, Hq * D}, DType::BF16)};
  const AttentionShape* shapes[2] = {&win, &glob};
  std::unique_ptr<AttentionPlan> plans[2];
  for (int s = 0; s < 2; ++s) {
    plans[s] = g->plan_attention_graph(d.casc, *shapes[s], s, max_pages);
    ASSERT_NE(plans[s], nullptr) << s;
  }
  for (int s = 0; s < 2; ++s) {
    // As the decoder does: the step eagerly, then recorded (capture does not run it).
    g->attention(*plans[s], qg, kg, vg, pg, outs[s]);
    g->begin_capture();
    g->attention(*plans[s], qg, kg, vg, pg, outs[s]);
    g->end_capture(s);
  }
  // Poison the outputs: the replays must write them.
  const std::vector<uint16_t> nan(size_t(B) * Hq * D, f32_to_bf16(std::nanf("")));
  for (Tensor& o : outs) g->copy_from_host(o, nan.data());
  for (int s : {1, 0}) g->replay(s);
  for (int s = 0; s < 2; ++s) {
    Tensor pc = cpu->upload(pages), oc = cpu->alloc({B, Hq * D}, DType::F32);
    cpu->attention(*cpu->plan_attention(d.plain, *shapes[s]), cpu->upload({{B, Hq * D}, q}),
                   cpu->upload({{B, Hk * D}, k}), cpu->upload({{B, Hk * D}, v}), pc, oc);
    EXPECT_LE(rel_error(g->to_host_f32(outs[s]), cpu->to_host_f32(oc)), kBf16Tol) << s;
  }
}

TEST_F(CudaVariants, GraphReplaysOfTwoKinds) {
  for (bool cascade : {false, true}) check_graph_kinds(128, cascade);
}

// head_dim 96 (our kernel on every level) and 256 in cascade steps (soft cap and window) and in
// graphs.
TEST_F(CudaVariants, HeadDim96And256InCascadesAndGraphs) {
  for (int D : {96, 256}) {
    SCOPED_TRACE(::testing::Message() << "D=" << D);
    std::unique_ptr<Backend> g = make_cuda_backend(0, {});
    SharedPrefixDecode d = shared_prefix_decode(rng, 4, 2, D, 16, 6, 8, 40);
    AttentionShape sh = make_shape(4, 2, D, 16, d.shape.kv.num_pages, kVariants[2]);
    sh.window_left = 8 * 16 + 40;
    EXPECT_LE(run_both(*g, d.casc, sh, 3.0f, &d.plain), kBf16Tol);
  }
  for (int D : {96, 256})
    for (bool cascade : {false, true}) check_graph_kinds(D, cascade);
}

// The second load of a JIT key in a fresh registry reads the cached object: no compile.
TEST(CudaJit, SecondLoadHitsTheCache) {
  const cuda::AttnKernelKey key{cuda::AttnKind::Decode, 256, false, false};
  cuda_host::JitOptions opt;  // NC_JIT_CACHE or the default folder
  opt.use_aot = false;
  cuda_host::AttnRegistry first(opt);
  const cuda::AttnKernelTable& a = first.get(key);
  EXPECT_EQ(first.stats().compiles + first.stats().hits, 1);
  cuda_host::AttnRegistry second(opt);
  const cuda::AttnKernelTable& b = second.get(key);
  EXPECT_EQ(second.stats().hits, 1);
  EXPECT_EQ(second.stats().compiles, 0);
  EXPECT_EQ(&a, &b);  // the same loaded object
  EXPECT_NE(b.decode_run, nullptr);
  EXPECT_EQ(second.get(key).decode_run, b.decode_run);  // later lookups stay in memory
  EXPECT_EQ(second.stats().hits, 1);
}

}  // namespace
}  // namespace nc::testing

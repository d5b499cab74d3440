// Attention over an FP8 (e4m3) KV cache on the CUDA backend against the CPU backend over the same
// codes: the decode table (our FP8 decode kernel; FlashInfer's CUDA-core decode with
// NC_FP8_DECODE_IMPL=fi) and FlashInfer's prefill kernel as decode (tensor cores), FA2
// prefill with and without the causal mask, 2-level cascades (merged by LSE; overlapped or not;
// the Hopper prefill asked for and declined), CUDA graphs, our head_dim-96 kernel; NHD and HND,
// page sizes 1 and 16, scales 1 and not. Every step also appends: the pages after it must hold
// the CPU's codes byte for byte.
//
// Tolerance: kBf16Tol (1e-2 relative), the bound of the bf16 cache's tests. Both backends read
// identical codes (e4m3 decodes exactly to bf16 and to float32), the same bf16-rounded q, k, v
// and the same scales, so what differs is what differs for a bf16 cache: the GPU's bf16 softmax
// weights in the tensor-core PV product (f16 in our FP8 decode kernel) and its bf16 output
// rounding.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <string>

#include "backend/cuda/fp8_decode_rule.h"
#include "fp8_kv_test_util.h"

namespace nc::testing {
namespace {

enum class StepKind { Decode, Mixed, NonCausal, Cascade };

const char* kind_name(StepKind k) {
  switch (k) {
    case StepKind::Decode:
      return "decode";
    case StepKind::Mixed:
      return "mixed prefill/decode";
    case StepKind::NonCausal:
      return "non-causal prefill";
    case StepKind::Cascade:
      return "2-level cascade";
  }
  return "?";
}

struct Fp8Problem {
  AttentionShape shape;
  AttentionStep step;
};

// `batch` entries with contexts of up to ~300 tokens over shuffled pages; Cascade puts a shared
// prefix (one non-causal entry over every row) before the own level. Decode/Cascade steps have
// one row per entry; Mixed and NonCausal some longer chunks.
Fp8Problem make_step(std::mt19937& rng, StepKind kind, int batch, int Hq, int Hk, int D, int ps,
                     KVLayout layout) {
  std::uniform_int_distribution<int> q_dist(2, 24), ctx_dist(0, 300), coin(0, 1);
  const bool one_row = kind == StepKind::Decode || kind == StepKind::Cascade;
  std::vector<int> q_len(batch), own_len(batch);
  int pages_needed = 0;
  for (int b = 0; b < batch; ++b) {
    q_len[b] = one_row || coin(rng) ? 1 : q_dist(rng);
    own_len[b] = q_len[b] + ctx_dist(rng);
    pages_needed += (own_len[b] + ps - 1) / ps;
  }
  const int prefix_len = kind == StepKind::Cascade ? ps * (2 + ctx_dist(rng) / ps) : 0;
  const int prefix_pages = prefix_len / ps;
  const int num_pages = pages_needed + prefix_pages + 2;
  std::vector<int32_t> perm(size_t(num_pages), 0);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  size_t next = 0;
  auto take = [&](int tokens) {
    const size_t n = size_t((tokens + ps - 1) / ps);
    std::vector<int32_t> v(perm.begin() + int64_t(next), perm.begin() + int64_t(next + n));
    next += n;
    return v;
  };
  Fp8Problem pr;
  pr.shape = AttentionShape{Hq, Hk, D, 1.0f / std::sqrt(float(D)),
                            KVCacheShape{1, num_pages, ps, Hk, D, layout}};
  pr.step.num_tokens = std::accumulate(q_len.begin(), q_len.end(), 0);
  if (kind == StepKind::Cascade) {
    PagedKVBatch shared;
    shared.causal = false;
    shared.add(pr.step.num_tokens, take(prefix_len), prefix_len, ps);
    pr.step.levels.push_back(shared);
  }
  PagedKVBatch own;
  own.causal = kind != StepKind::NonCausal;
  for (int b = 0; b < batch; ++b) own.add(q_len[b], take(own_len[b]), own_len[b], ps);
  pr.step.levels.push_back(own);
  return pr;
}

struct Scales {
  float k, v;
};

class CudaFp8Kv : public GpuVsCpu {
 protected:
  // One step on both backends over the same codes; checks the output and every page's bytes.
  void check(const Fp8Problem& pr, Scales sc, const CudaBackendOptions& opt,
             const std::string& label) {
    SCOPED_TRACE(label);
    std::unique_ptr<Backend> g = make_cuda_backend(0, opt);
    const AttentionShape shape = with_fp8(pr.shape, sc.k, sc.v);
    const KVCacheShape& kv = shape.kv;
    const int T = pr.step.num_tokens, Hq = shape.num_qo_heads, Hk = shape.num_kv_heads,
              D = shape.head_dim;
    const std::vector<uint8_t> codes =
        random_codes(rng, size_t(kv.num_pages) * kv.elems_per_page(), sc.k);
    Tensor pc = upload_codes(*cpu, fp8_page_shape(kv), codes);
    Tensor pg = upload_codes(*g, fp8_page_shape(kv), codes);
    const HostTensor q{{T, Hq * D}, random_vec(rng, size_t(T) * Hq * D)};
    const HostTensor k{{T, Hk * D}, random_vec(rng, size_t(T) * Hk * D, sc.k)};
    const HostTensor v{{T, Hk * D}, random_vec(rng, size_t(T) * Hk * D, sc.v)};
    const HostTensor poison{{T, Hq * D}, std::vector<float>(size_t(T) * Hq * D, std::nanf(""))};
    Tensor oc = cpu->upload(poison), og = g->upload(poison);
    auto plan_g = g->plan_attention(pr.step, shape);
    for (bool sm90 : cuda_plan_uses_sm90_prefill(*plan_g))
      EXPECT_FALSE(sm90) << "an fp8 level on the Hopper prefill (it takes bf16 K/V only)";
    if (opt.decode_kernel == DecodeKernel::CudaCores && pr.step.levels.size() == 1 &&
        shape.head_dim != 96) {
      bool one_row = true;
      for (int b = 0; b < pr.step.levels[0].batch_size(); ++b)
        one_row = one_row && pr.step.levels[0].q_len(b) == 1;
      EXPECT_EQ(bool(cuda_plan_uses_decode_kernel(*plan_g)[0]), one_row);
    }
    if (shape.head_dim == 96) {
      for (bool generic : cuda_plan_uses_generic_kernel(*plan_g)) EXPECT_TRUE(generic);
    }
    cpu->attention(*cpu->plan_attention(pr.step, shape), cpu->upload(q), cpu->upload(k),
                   cpu->upload(v), pc, oc);
    g->attention(*plan_g, g->upload(q), g->upload(k), g->upload(v), pg, og);
    EXPECT_LE(rel_error(g->to_host_f32(og), cpu->to_host_f32(oc)), kBf16Tol) << "T=" << T;
    const int64_t diff = first_code_difference(read_bytes(*g, pg), read_bytes(*cpu, pc));
    EXPECT_EQ(diff, -1) << "pages differ from the CPU's at byte " << diff;
  }
};

TEST_F(CudaFp8Kv, EveryKernelPathMatchesTheCpu) {
  for (DecodeKernel kernel : {DecodeKernel::CudaCores, DecodeKernel::TensorCores})
    for (int ps : {1, 16})
      for (KVLayout layout : {KVLayout::NHD, KVLayout::HND})
        for (StepKind kind :
             {StepKind::Decode, StepKind::Mixed, StepKind::NonCausal, StepKind::Cascade})
          for (auto [Hq, Hk, D] : {std::tuple{8, 2, 64}, std::tuple{16, 4, 128}}) {
            CudaBackendOptions opt;
            opt.decode_kernel = kernel;
            // Asked for; fp8 levels must still run FA2.
            opt.shared_level_kernel = SharedLevelKernel::SM90;
            const Fp8Problem pr = make_step(rng, kind, 9, Hq, Hk, D, ps, layout);
            const std::string label =
                std::string(kernel == DecodeKernel::CudaCores ? "cuda cores " : "tensor cores ") +
                kind_name(kind) + " page " + std::to_string(ps) +
                (layout == KVLayout::NHD ? " NHD " : " HND ") + std::to_string(Hq) + "/" +
                std::to_string(Hk) + "/" + std::to_string(D);
            check(pr, {0.5f, 2.0f}, opt, label + " scales 0.5/2");
            if (ps == 16) check(pr, {1.0f, 1.0f}, opt, label + " scales 1/1");
            if (ps == 1) check(pr, {1.3f, 0.7f}, opt, label + " scales 1.3/0.7");
          }
}

// A cascade whose shared level has 160 rows (where Auto would pick the Hopper kernel for bf16),
// overlapped on the side stream and not, and long contexts that split the KV.
TEST_F(CudaFp8Kv, WideCascadesAndSplitKv) {
  for (bool overlap : {false, true}) {
    CudaBackendOptions opt;
    opt.overlap_cascade_levels = overlap;
    const std::string label = overlap ? "overlapped" : "serial";
    check(make_step(rng, StepKind::Cascade, 160, 16, 4, 128, 16, KVLayout::NHD), {0.25f, 3.0f}, opt,
          label + " cascade of 160 rows");
  }
  // Two long sequences: FlashInfer splits their KV and merges the partial (v_scale'd) states.
  Fp8Problem pr = make_step(rng, StepKind::Decode, 2, 16, 4, 128, 16, KVLayout::HND);
  pr.step.levels[0] = PagedKVBatch{};
  pr.shape.kv.num_pages = 2 * 400;
  for (int b = 0; b < 2; ++b) {
    std::vector<int32_t> pages(400);
    std::iota(pages.begin(), pages.end(), b * 400);
    pr.step.levels[0].add(1, pages, 400 * 16 - 3 * b, 16);
  }
  for (DecodeKernel kernel : {DecodeKernel::CudaCores, DecodeKernel::TensorCores}) {
    CudaBackendOptions opt;
    opt.decode_kernel = kernel;
    check(pr, {0.5f, 1.5f}, opt, "split-KV decode");
  }
}

// head_dim 96: our own kernel on every level, templated on the page element type.
TEST_F(CudaFp8Kv, HeadDim96RunsTheGenericKernel) {
  for (int ps : {1, 16})
    for (KVLayout layout : {KVLayout::NHD, KVLayout::HND})
      for (StepKind kind : {StepKind::Decode, StepKind::Mixed, StepKind::Cascade}) {
        const Fp8Problem pr = make_step(rng, kind, 7, 8, 2, 96, ps, layout);
        check(pr, {0.5f, 1.25f}, CudaBackendOptions{},
              std::string("hd96 ") + kind_name(kind) + " page " + std::to_string(ps));
      }
}

// Decode cascades through plan_attention_graph: captured once, replayed over new steps of the
// same batch size, against the CPU; both own-level kernels.
TEST_F(CudaFp8Kv, GraphsReplayFp8Steps) {
  const int B = 8, max_pages = 32;
  for (DecodeKernel kernel : {DecodeKernel::CudaCores, DecodeKernel::TensorCores})
    for (auto [ps, layout] : {std::tuple{16, KVLayout::NHD}, std::tuple{1, KVLayout::HND}}) {
      SCOPED_TRACE(::testing::Message() << "kernel " << int(kernel) << " page " << ps);
      CudaBackendOptions opt;
      opt.decode_kernel = kernel;
      std::unique_ptr<Backend> g = make_cuda_backend(0, opt);
      const int Hq = 8, Hk = 2, D = 64, num_pages = 2 * B * max_pages;
      const AttentionShape shape =
          with_fp8(AttentionShape{Hq, Hk, D, 0.125f, KVCacheShape{1, num_pages, ps, Hk, D, layout}},
                   0.5f, 2.0f);
      const std::vector<uint8_t> codes =
          random_codes(rng, size_t(num_pages) * shape.kv.elems_per_page(), 0.5f);
      Tensor pg = upload_codes(*g, fp8_page_shape(shape.kv), codes);
      Tensor pc = upload_codes(*cpu, fp8_page_shape(shape.kv), codes);
      Tensor qg = g->alloc({B, Hq * D}, DType::BF16), kg = g->alloc({B, Hk * D}, DType::BF16),
             vg = g->alloc({B, Hk * D}, DType::BF16), og = g->alloc({B, Hq * D}, DType::BF16);
      std::uniform_int_distribution<int> len(1, (max_pages - 1) * ps);
      for (int round = 0; round < 4; ++round) {
        SCOPED_TRACE(::testing::Message() << "round " << round);
        // A shared prefix of 2 pages (pages 0, 1) and B own entries on their own page ranges.
        const int prefix = 2 * ps;
        AttentionStep step;
        step.num_tokens = B;
        PagedKVBatch shared, own;
        shared.causal = false;
        shared.add(B, {0, 1}, prefix, ps);
        for (int b = 0; b < B; ++b) {
          const int n = len(rng);
          std::vector<int32_t> pages(size_t((n + ps - 1) / ps));
          std::iota(pages.begin(), pages.end(), 2 + b * max_pages);
          own.add(1, pages, n, ps);
        }
        step.levels = {shared, own};
        const std::vector<float> q = random_vec(rng, size_t(B) * Hq * D),
                                 k = random_vec(rng, size_t(B) * Hk * D, 0.5f),
                                 v = random_vec(rng, size_t(B) * Hk * D, 2.0f);
        // Into the tensors the graph was captured with.
        g->copy_rows(g->upload({{B, Hq * D}, q}), qg);
        g->copy_rows(g->upload({{B, Hk * D}, k}), kg);
        g->copy_rows(g->upload({{B, Hk * D}, v}), vg);
        std::unique_ptr<AttentionPlan> plan = g->plan_attention_graph(step, shape, 0, max_pages);
        ASSERT_NE(plan, nullptr);
        if (round == 0) {
          g->begin_capture();
          g->attention(*plan, qg, kg, vg, pg, og);
          g->end_capture(0);
        }
        g->replay(0);
        Tensor oc = cpu->alloc({B, Hq * D}, DType::F32);
        cpu->attention(*cpu->plan_attention(step, shape), cpu->upload({{B, Hq * D}, q}),
                       cpu->upload({{B, Hk * D}, k}), cpu->upload({{B, Hk * D}, v}), pc, oc);
        EXPECT_LE(rel_error(g->to_host_f32(og), cpu->to_host_f32(oc)), kBf16Tol);
        const int64_t diff = first_code_difference(read_bytes(*g, pg), read_bytes(*cpu, pc));
        EXPECT_EQ(diff, -1) << "pages differ at byte " << diff;
      }
    }
}

TEST_F(CudaFp8Kv, RejectsMismatchedPagesAndBadScales) {
  const Fp8Problem pr = make_step(rng, StepKind::Decode, 2, 8, 2, 64, 16, KVLayout::NHD);
  const AttentionShape shape = with_fp8(pr.shape, 1.0f, 1.0f);
  const int T = pr.step.num_tokens;
  Tensor q = gpu->alloc({T, 8 * 64}, DType::BF16), k = gpu->alloc({T, 2 * 64}, DType::BF16),
         v = gpu->alloc({T, 2 * 64}, DType::BF16), o = gpu->alloc({T, 8 * 64}, DType::BF16);
  Tensor bf16_pages = gpu->alloc(fp8_page_shape(shape.kv), DType::BF16);
  Tensor fp8_pages = gpu->alloc(fp8_page_shape(shape.kv), DType::F8E4M3);
  // An fp8 plan over bf16 pages, and a bf16 plan over fp8 pages.
  EXPECT_THROW(gpu->attention(*gpu->plan_attention(pr.step, shape), q, k, v, bf16_pages, o), Error);
  EXPECT_THROW(gpu->attention(*gpu->plan_attention(pr.step, pr.shape), q, k, v, fp8_pages, o),
               Error);
  for (Scales bad :
       {Scales{0.0f, 1.0f}, Scales{1.0f, -2.0f}, Scales{NAN, 1.0f}, Scales{1.0f, INFINITY}})
    EXPECT_THROW(gpu->plan_attention(pr.step, with_fp8(pr.shape, bad.k, bad.v)), Error);
}

// One level of entries (q_len, kv_len) over shuffled pages.
Fp8Problem entries_problem(std::mt19937& rng, const std::vector<std::pair<int, int>>& entries,
                           int Hq, int Hk, int D, int ps, KVLayout layout) {
  int num_pages = 1;
  for (auto [q_len, n] : entries) num_pages += (n + ps - 1) / ps;
  std::vector<int32_t> perm(size_t(num_pages), 0);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  Fp8Problem pr;
  pr.shape = AttentionShape{Hq, Hk, D, 1.0f / std::sqrt(float(D)),
                            KVCacheShape{1, num_pages, ps, Hk, D, layout}};
  PagedKVBatch own;
  size_t next = 0;
  for (auto [q_len, n] : entries) {
    const size_t pages = size_t((n + ps - 1) / ps);
    own.add(
        q_len,
        std::vector<int32_t>(perm.begin() + int64_t(next), perm.begin() + int64_t(next + pages)), n,
        ps);
    next += pages;
    pr.step.num_tokens += q_len;
  }
  pr.step.levels.push_back(own);
  return pr;
}

// Decode steps of `lengths` tokens per entry (one query row each).
Fp8Problem decode_problem(std::mt19937& rng, const std::vector<int>& lengths, int Hq, int Hk, int D,
                          int ps, KVLayout layout) {
  std::vector<std::pair<int, int>> entries;
  for (int n : lengths) entries.emplace_back(1, n);
  return entries_problem(rng, entries, Hq, Hk, D, ps, layout);
}

// Our FP8 decode kernel (attn_decode_fp8.cuh, the decode table's fp8 path) over every GQA group
// the decode table takes (1-8 use the MMA's first 8 rows, 16 both halves), both head dims, page
// sizes that do and do not hold whole 16-token steps, both layouts, and batches that run one
// block per entry, split the KV (a lone 5000-token entry) or end steps mid-page (lengths 1-40).
TEST_F(CudaFp8Kv, OwnDecodeKernelMatchesTheCpu) {
  std::uniform_int_distribution<int> short_len(1, 40), long_len(200, 2500);
  for (int group : {1, 2, 3, 4, 6, 8, 16})
    for (int D : {64, 128})
      for (auto [ps, layout] : {std::tuple{16, KVLayout::NHD}, std::tuple{1, KVLayout::HND},
                                std::tuple{7, KVLayout::NHD}, std::tuple{32, KVLayout::HND}}) {
        const int Hk = group == 16 ? 1 : 2;
        std::vector<std::vector<int>> batches = {{5000}, {}, {}};
        for (int b = 0; b < 37; ++b) batches[1].push_back(short_len(rng));
        for (int b = 0; b < 6; ++b) batches[2].push_back(long_len(rng));
        for (const std::vector<int>& lengths : batches) {
          const std::string label = "group " + std::to_string(group) + " hd" + std::to_string(D) +
                                    " page " + std::to_string(ps) + " batch " +
                                    std::to_string(lengths.size());
          CudaBackendOptions opt;
          opt.decode_kernel = DecodeKernel::CudaCores;  // the decode table, whatever the rule
          check(decode_problem(rng, lengths, group * Hk, Hk, D, ps, layout), {0.5f, 2.0f}, opt,
                label);
        }
      }
}

// A mixed step (decode entries first, as the scheduler orders them, then prefill chunks) splits
// into a decode-table plan for its leading one-row entries and an FA2 plan for the rest
// (cuda_attention_split.cc); a step that starts with a prefill chunk, or a cascade, does not.
TEST_F(CudaFp8Kv, MixedStepsSplitTheirDecodeRows) {
  // Group 4: the A/B settings that put its decode levels on the prefill kernel do not split.
  if (std::getenv("NC_FP8_DECODE_KERNEL") != nullptr || !cuda::own_fp8_decode_enabled())
    GTEST_SKIP() << "NC_FP8_DECODE_KERNEL or NC_FP8_DECODE_IMPL=fi set";
  std::uniform_int_distribution<int> len(1, 600), chunk(2, 40);
  for (auto [ps, layout] : {std::tuple{16, KVLayout::NHD}, std::tuple{1, KVLayout::HND}})
    for (int decodes : {0, 1, 9}) {
      std::vector<std::pair<int, int>> entries;
      for (int i = 0; i < decodes; ++i) entries.emplace_back(1, len(rng));
      for (int i = 0; i < 4; ++i) {
        const int q_len = chunk(rng);
        entries.emplace_back(q_len, q_len + len(rng));
      }
      entries.emplace_back(1, len(rng));  // a one-row entry after the chunks stays with them
      const Fp8Problem pr = entries_problem(rng, entries, 16, 4, 128, ps, layout);
      const std::string label =
          std::to_string(decodes) + " leading decodes, page " + std::to_string(ps);
      const std::vector<bool> decode_levels =
          cuda_plan_uses_decode_kernel(*gpu->plan_attention(pr.step, with_fp8(pr.shape, 1, 1)));
      const std::vector<bool> expected =
          decodes > 0 ? std::vector<bool>{true, false} : std::vector<bool>{false};
      EXPECT_EQ(decode_levels, expected) << label;
      check(pr, {0.5f, 2.0f}, CudaBackendOptions{}, label);
    }
  const Fp8Problem cascade = make_step(rng, StepKind::Cascade, 5, 16, 4, 128, 16, KVLayout::NHD);
  EXPECT_EQ(cuda_plan_uses_decode_kernel(
                *gpu->plan_attention(cascade.step, with_fp8(cascade.shape, 1, 1)))
                .size(),
            2u);
}

// The automatic choice for an fp8 decode step (cuda_attention.cc): the decode table (our FP8
// kernel) for every group; with NC_FP8_DECODE_IMPL=fi, FlashInfer's CUDA-core kernel up to GQA
// group 2 and its tensor-core kernel from group 4. The same in graph plans. Skipped when
// NC_FP8_DECODE_KERNEL forces one (an A/B run).
TEST_F(CudaFp8Kv, AutoDecodeKernelFollowsTheGroup) {
  if (std::getenv("NC_FP8_DECODE_KERNEL") != nullptr) GTEST_SKIP() << "NC_FP8_DECODE_KERNEL set";
  const bool own = cuda::own_fp8_decode_enabled();
  struct Heads {
    int Hq, Hk;
  };
  for (Heads h : {Heads{8, 8}, Heads{8, 4}, Heads{8, 2}, Heads{16, 2}}) {
    SCOPED_TRACE(std::to_string(h.Hq) + "/" + std::to_string(h.Hk) + " heads");
    const bool decode_table = own || h.Hq / h.Hk <= 2;
    const Fp8Problem pr = make_step(rng, StepKind::Decode, 3, h.Hq, h.Hk, 128, 16, KVLayout::NHD);
    const AttentionShape shape = with_fp8(pr.shape, 1.0f, 1.0f);
    EXPECT_EQ(bool(cuda_plan_uses_decode_kernel(*gpu->plan_attention(pr.step, shape))[0]),
              decode_table)
        << "eager plan";
    int max_pages = 1;
    for (int b = 0; b < pr.step.levels[0].batch_size(); ++b)
      max_pages = std::max(max_pages, pr.step.levels[0].num_pages(b));
    auto graph_plan = gpu->plan_attention_graph(pr.step, shape, 0, max_pages);
    ASSERT_NE(graph_plan, nullptr);
    EXPECT_EQ(bool(cuda_plan_uses_decode_kernel(*graph_plan).back()), decode_table) << "graph plan";
  }
}

}  // namespace
}  // namespace nc::testing

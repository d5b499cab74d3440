// The FP8 KV cache on the CUDA backend beyond the attention kernels: the quantising append's codes
// against core/fp8.h (ties, saturation, subnormals, infinities), the compute-capability check
// (a plain function: no pre-Ada GPU here), sparse decode's page bounds and selection over fp8
// pages against the CPU, the host tier's byte copies of fp8 pages, and a whole decoder with an fp8
// cache on CUDA against the same decoder with an fp8 cache on the CPU.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <numeric>
#include <string>

#include "backend/cuda/attn_kernels.h"
#include "backend/cuda/fp8_kv_support.h"
#include "backend/cuda/jit_compiler.h"
#include "core/error.h"
#include "fp8_kv_test_util.h"
#include "kv/kv_dtype.h"
#include "model/llama.h"
#include "seq_runner.h"
#include "sparse_test_util.h"
#include "synthetic_model.h"

namespace nc::testing {
namespace {

TEST(CudaFp8KvSupport, NeedsComputeCapability89) {
  using cuda_host::fp8_kv_capable;
  EXPECT_TRUE(fp8_kv_capable(8, 9));
  EXPECT_TRUE(fp8_kv_capable(9, 0));
  EXPECT_TRUE(fp8_kv_capable(10, 0));
  EXPECT_FALSE(fp8_kv_capable(8, 6));
  EXPECT_FALSE(fp8_kv_capable(8, 0));
  EXPECT_FALSE(fp8_kv_capable(7, 5));
  try {
    cuda_host::check_fp8_kv_capable("cuda:0 (NVIDIA A100-SXM4-80GB)", 8, 0);
    ADD_FAILURE() << "no error for compute capability 8.0";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("NVIDIA A100-SXM4-80GB"), std::string::npos) << msg;
    EXPECT_NE(msg.find("8.0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("8.9"), std::string::npos) << msg;
  }
  EXPECT_NO_THROW(cuda_host::check_fp8_kv_capable("cuda:0 (NVIDIA H100)", 9, 0));
}

// FP8 configurations have keys of their own, are never compiled in, and generate a JIT source
// that instantiates FlashInfer with e4m3 pages.
TEST(CudaFp8KvSupport, Fp8KernelKeysGoThroughTheJit) {
  using cuda::AttnKind;
  const cuda::AttnKernelKey dec{AttnKind::Decode, 128, false, false, true};
  const cuda::AttnKernelKey pre{AttnKind::PrefillCausal, 64, false, false, true};
  EXPECT_EQ(cuda::attn_key_string(dec), "decode_hd128_w0_sc0_bf16_kvfp8");
  EXPECT_EQ(cuda::attn_key_string(pre), "prefill_causal_hd64_w0_sc0_bf16_kvfp8");
  EXPECT_EQ(cuda::attn_key_string({AttnKind::Decode, 128}), "decode_hd128_w0_sc0_bf16");
  EXPECT_EQ(cuda::aot_attn_table(dec), nullptr);
  EXPECT_EQ(cuda::aot_attn_table(pre), nullptr);
  EXPECT_NE(cuda::aot_attn_table({AttnKind::Decode, 128}), nullptr);
  const std::string src = cuda_host::jit_source(dec, "key", "entry");
  EXPECT_NE(src.find("#define NC_ATTN_KV_FP8 1"), std::string::npos) << src;
  EXPECT_NE(cuda_host::jit_source({AttnKind::Decode, 128}, "key", "entry")
                .find("#define NC_ATTN_KV_FP8 0"),
            std::string::npos);
}

// Values every rounding rule is tested on (all exact in bf16): ties between e4m3 neighbours
// (1 + 1/16 rounds down to the even 1.0, 1 + 3/16 up to the even 1.25), saturation at 448 (464
// is the tie past the largest code, and infinities saturate too), subnormal ties (2^-10, 3 2^-10)
// and signed zeros.
std::vector<float> special_values() {
  const float v[] = {0.0f,         -0.0f,     1.0625f, 1.1875f,   -1.0625f, -1.1875f,  448.0f,
                     464.0f,       480.0f,    -500.0f, 1000.0f,   INFINITY, -INFINITY, 0x1p-10f,
                     3 * 0x1p-10f, -0x1p-10f, 0x1p-9f, 0x1.2p-9f, 240.0f,   -0.015625f};
  return {std::begin(v), std::end(v)};
}

class CudaFp8KvCache : public GpuVsCpu {};

TEST_F(CudaFp8KvCache, AppendWritesCoreFp8Codes) {
  for (int D : {64, 96, 128})
    for (int ps : {1, 16})
      for (KVLayout layout : {KVLayout::NHD, KVLayout::HND}) {
        SCOPED_TRACE(::testing::Message()
                     << "D " << D << " page " << ps << " layout " << int(layout));
        const int Hq = 4, Hk = 2, T = 37;
        const int num_pages = (T + ps - 1) / ps + 1;
        // k_scale 0.5 keeps every tie a tie (x * 2 is exact); v_scale 3 rounds arbitrary products.
        const AttentionShape shape =
            with_fp8(AttentionShape{Hq, Hk, D, 0.1f, KVCacheShape{1, num_pages, ps, Hk, D, layout}},
                     0.5f, 3.0f);
        AttentionStep step;
        step.num_tokens = T;
        PagedKVBatch own;
        std::vector<int32_t> pages(size_t((T + ps - 1) / ps));
        std::iota(pages.begin(), pages.end(), 1);  // page 0 stays untouched
        own.add(T, pages, T, ps);
        step.levels = {own};
        std::vector<float> k = random_vec(rng, size_t(T) * Hk * D, 100.0f),
                           v = random_vec(rng, size_t(T) * Hk * D, 100.0f);
        const std::vector<float> sp = special_values();
        std::copy(sp.begin(), sp.end(), k.begin());
        std::copy(sp.begin(), sp.end(), v.begin() + int64_t(v.size() - sp.size()));
        const std::vector<uint8_t> before(size_t(num_pages) * shape.kv.elems_per_page(), 0x55);
        Tensor pg = upload_codes(*gpu, fp8_page_shape(shape.kv), before);
        Tensor out = gpu->alloc({T, Hq * D}, DType::BF16);
        gpu->attention(*gpu->plan_attention(step, shape),
                       gpu->upload({{T, Hq * D}, random_vec(rng, size_t(T) * Hq * D)}),
                       gpu->upload({{T, Hk * D}, k}), gpu->upload({{T, Hk * D}, v}), pg, out);
        std::vector<uint8_t> want = before;
        const float inv_k = 1.0f / shape.kv.k_scale, inv_v = 1.0f / shape.kv.v_scale;
        for (int t = 0; t < T; ++t)
          for (int h = 0; h < Hk; ++h)
            for (int d = 0; d < D; ++d) {
              const int64_t page = pages[size_t(t / ps)] * shape.kv.elems_per_page();
              const int64_t x = (int64_t(t) * Hk + h) * D + d;
              want[size_t(page + shape.kv.offset_in_page(0, t % ps, h) + d)] =
                  f32_to_e4m3(k[size_t(x)] * inv_k);
              want[size_t(page + shape.kv.offset_in_page(1, t % ps, h) + d)] =
                  f32_to_e4m3(v[size_t(x)] * inv_v);
            }
        const std::vector<uint8_t> got = read_bytes(*gpu, pg);
        const int64_t diff = first_code_difference(got, want);
        EXPECT_EQ(diff, -1) << "byte " << diff << ": got "
                            << int(got[size_t(std::max<int64_t>(diff, 0))]) << " want "
                            << int(want[size_t(std::max<int64_t>(diff, 0))]);
        EXPECT_TRUE(std::all_of(got.begin(), got.begin() + shape.kv.elems_per_page(),
                                [](uint8_t c) { return c == 0x55; }))
            << "page 0 was written";
      }
}

// Keys that are small integers (k_scale 0.5: codes -6..6, exact) and exact queries make the page
// scores exact, so the GPU's selection must be the CPU rule's page for page; bounds of fp8 pages
// (decoded, times k_scale) must equal the CPU backend's bit for bit.
// `entries`: each request's (KV length, query rows); entries of one row past the budget select.
void check_sparse_over_fp8(Backend* gpu, Backend* cpu, std::mt19937& rng, int Hq, int Hk, int D,
                           const std::vector<std::pair<int, int>>& entries) {
  const int ps = 16;
  for (KVLayout layout : {KVLayout::NHD, KVLayout::HND}) {
    SCOPED_TRACE(::testing::Message() << "layout " << int(layout));
    int num_pages = 1;
    for (auto [len, rows] : entries) num_pages += (len + ps - 1) / ps;
    const AttentionShape shape =
        with_fp8(AttentionShape{Hq, Hk, D, 0.125f, KVCacheShape{1, num_pages, ps, Hk, D, layout}},
                 0.5f, 1.5f);
    const KVCacheShape& kv = shape.kv;
    AttentionStep step;
    PagedKVBatch own;
    int next = 0;
    for (auto [len, rows] : entries) {
      std::vector<int32_t> pages(size_t((len + ps - 1) / ps));
      std::iota(pages.begin(), pages.end(), next);
      next += int(pages.size());
      own.add(rows, pages, len, ps);
      step.num_tokens += rows;
    }
    step.levels = {own};
    // Codes: K of small integers over k_scale, V random; `keys` the K values as float32 pages.
    std::vector<uint8_t> codes = random_codes(rng, size_t(num_pages) * kv.elems_per_page(), 1.5f);
    KVCacheShape plain = kv;
    plain.fp8 = false;
    std::vector<float> keys(codes.size(), 0.0f);
    for (int p = 0; p < num_pages; ++p)
      for (int s = 0; s < ps; ++s)
        for (int h = 0; h < Hk; ++h)
          for (int d = 0; d < D; ++d) {
            const size_t at = size_t(p * kv.elems_per_page() + kv.offset_in_page(0, s, h) + d);
            keys[at] = small_int(rng, -3, 3);
            codes[at] = f32_to_e4m3(keys[at] / kv.k_scale);
          }
    Tensor pg = upload_codes(*gpu, fp8_page_shape(kv), codes);
    Tensor pc = upload_codes(*cpu, fp8_page_shape(kv), codes);
    std::vector<int32_t> slots;
    PageBounds cb(num_pages, Hk, D);
    for (int p = 0; p < num_pages; ++p) {
      slots.insert(slots.end(), {p, ps});
      cb.rebuild(p, keys.data(), plain, ps);
    }
    Tensor sc = cpu->alloc({num_pages, 2}, DType::I32);
    cpu->copy_from_host(sc, slots.data());
    Tensor sg = gpu->alloc({num_pages, 2}, DType::I32);
    gpu->copy_from_host(sg, slots.data());
    Tensor bc = empty_bounds(*cpu, kv), bg = empty_bounds(*gpu, kv);
    cpu->update_page_bounds(pc, kv, sc, bc);
    gpu->update_page_bounds(pg, kv, sg, bg);
    const std::vector<float> bounds_g = gpu->to_host_f32(bg);
    EXPECT_EQ(first_difference(bounds_g, cpu->to_host_f32(bc)), -1) << "vs the CPU backend";
    EXPECT_EQ(first_difference(bounds_g, bounds_as_tensor(cb)), -1) << "vs the float keys";

    const PageSelection sel{128, 1, 32};
    const int T = step.num_tokens;
    const HostTensor q{{T, Hq * D}, exact_queries(rng, size_t(T) * Hq * D)};
    const HostTensor k{{T, Hk * D}, random_vec(rng, size_t(T) * Hk * D)};
    const HostTensor v{{T, Hk * D}, random_vec(rng, size_t(T) * Hk * D)};
    auto plan = gpu->plan_sparse_attention(step, shape, sel);
    Tensor og = gpu->alloc({T, Hq * D}, DType::BF16), oc = cpu->alloc({T, Hq * D}, DType::F32);
    gpu->sparse_attention(*plan, gpu->upload(q), gpu->upload(k), gpu->upload(v), pg, bg, og);
    const AttentionStep want = expected_sparse_step(step, cb, q.data, Hq, sel, ps);
    EXPECT_EQ(page_list_diff(want.levels.back(), cuda_sparse_selected_pages(*plan)), "");
    cpu->attention(*cpu->plan_attention(want, shape), cpu->upload(q), cpu->upload(k),
                   cpu->upload(v), pc, oc);
    EXPECT_LE(rel_error(gpu->to_host_f32(og), cpu->to_host_f32(oc)), kBf16Tol);
    EXPECT_EQ(first_code_difference(read_bytes(*gpu, pg), read_bytes(*cpu, pc)), -1);
  }
}

TEST_F(CudaFp8KvCache, SparseBoundsAndSelectionOverFp8Pages) {
  check_sparse_over_fp8(gpu.get(), cpu.get(), rng, 8, 2, 64,
                        {{400, 1}, {60, 1}, {333, 1}, {700, 1}});
}

// A mixed step (decode rows, then a prompt's chunk) over fp8 pages at group 2: the plain plan
// splits it into the decode table's rows and the rest; the sparse plan must not (its selection
// writes one plan's own level), and selects the decode rows' pages as on a decode-only step.
TEST_F(CudaFp8KvCache, SparseMixedStepOverFp8PagesIsNotSplit) {
  const std::vector<std::pair<int, int>> entries = {{400, 1}, {60, 1}, {333, 1}, {700, 5}};
  const int Hq = 4, Hk = 2, D = 128;
  AttentionStep step;
  PagedKVBatch own;
  int next = 0;
  for (auto [len, rows] : entries) {
    std::vector<int32_t> pages(size_t((len + 15) / 16));
    std::iota(pages.begin(), pages.end(), next);
    next += int(pages.size());
    own.add(rows, pages, len, 16);
    step.num_tokens += rows;
  }
  step.levels = {own};
  const AttentionShape shape = with_fp8(
      AttentionShape{Hq, Hk, D, 0.125f, KVCacheShape{1, next + 1, 16, Hk, D, KVLayout::NHD}}, 0.5f,
      1.5f);
  ASSERT_EQ(cuda_plan_uses_decode_kernel(*gpu->plan_attention(step, shape)).size(), 2u)
      << "the plain plan of this step is no longer split: the test does not reach the split";
  check_sparse_over_fp8(gpu.get(), cpu.get(), rng, Hq, Hk, D, entries);
}

// The host tier moves pages as bytes: an fp8 layer's page is half a bf16 one's, and pages go out
// and come back intact.
TEST_F(CudaFp8KvCache, HostTierCopiesFp8PagesAsBytes) {
  const KVCacheShape kv{2, 10, 16, 2, 64, KVLayout::NHD};
  std::vector<Tensor> layers;
  std::vector<std::vector<uint8_t>> before;
  for (int l = 0; l < kv.num_layers; ++l) {
    before.push_back(random_codes(rng, size_t(kv.num_pages) * kv.elems_per_page(), 1.0f));
    layers.push_back(upload_codes(*gpu, fp8_page_shape(kv), before.back()));
  }
  const int64_t layer_page = kv.elems_per_page();  // bytes: one a value
  ASSERT_EQ(int64_t(layers[0].nbytes()), kv.num_pages * layer_page);
  std::unique_ptr<HostBuffer> host = gpu->alloc_host_buffer(4 * kv.num_layers * layer_page);
  const std::vector<KVPageCopy> out = {{3, 0, true}, {7, 1, true}};
  gpu->copy_kv_pages(layers, out, *host);
  gpu->sync_kv_copies();
  // Host page h holds layer l's page at (h * layers + l) * layer_page.
  for (int l = 0; l < kv.num_layers; ++l)
    EXPECT_EQ(std::memcmp(host->data() + (1 * kv.num_layers + l) * layer_page,
                          before[size_t(l)].data() + 7 * layer_page, size_t(layer_page)),
              0)
        << "layer " << l;
  const std::vector<KVPageCopy> back = {{5, 0, false}, {6, 1, false}};
  gpu->copy_kv_pages(layers, back, *host);
  gpu->sync_kv_copies();
  for (int l = 0; l < kv.num_layers; ++l) {
    const std::vector<uint8_t> now = read_bytes(*gpu, layers[size_t(l)]);
    const auto page = [&](const std::vector<uint8_t>& b, int p) {
      return std::vector<uint8_t>(b.begin() + p * layer_page, b.begin() + (p + 1) * layer_page);
    };
    EXPECT_EQ(page(now, 5), page(before[size_t(l)], 3)) << "layer " << l;
    EXPECT_EQ(page(now, 6), page(before[size_t(l)], 7)) << "layer " << l;
    EXPECT_EQ(page(now, 4), page(before[size_t(l)], 4)) << "layer " << l;
  }
}

// A 2-layer Llama (head_dim 64) with an fp8 cache (scales 0.75 / 1.5) on both backends: logits of
// every new token over prefills, a chunk beside decodes, and decodes. Unlike the attention tests,
// the two backends do not quantise the same K/V here: the CPU's are float32, the GPU's bf16, and
// where a bf16 rounding crosses the midpoint between two e4m3 codes (about 1 value in 16) the codes
// differ by one step (12.5%). That is why the bound is 6e-2 rather than the bf16 cache's 2e-2; a
// scale applied wrongly (or not at all) moves the logits by tens of percent.
TEST_F(CudaFp8KvCache, WholeModelMatchesTheCpuFp8Cache) {
  const ModelConfig cfg = synthetic_config("llama");
  const WeightMap w = synthetic_weights(cfg, rng);
  for (int ps : {1, 16})
    for (KVLayout layout : {KVLayout::NHD, KVLayout::HND}) {
      SCOPED_TRACE(::testing::Message() << "page " << ps << " layout " << int(layout));
      LlamaModel mc(cfg, w, *cpu), mg(cfg, w, *gpu), mg16(cfg, w, *gpu);
      mc.set_kv_cache_dtype(KVCacheDType::FP8, 0.75f, 1.5f);
      mg.set_kv_cache_dtype(KVCacheDType::FP8, 0.75f, 1.5f);
      // The memory plan's unit: an fp8 page is half a bf16 one on CUDA.
      EXPECT_EQ(mg.kv_page_dtype(), DType::F8E4M3);
      EXPECT_EQ(2 * mg.kv_bytes_per_page(16), mg16.kv_bytes_per_page(16));
      SeqRunner rc(mc, ps, 512, layout), rg(mg, ps, 512, layout);
      std::uniform_int_distribution<int32_t> tok(0, int32_t(cfg.vocab_size) - 1);
      auto tokens = [&](int n) {
        std::vector<int32_t> t(static_cast<size_t>(n));
        for (auto& x : t) x = tok(rng);
        return t;
      };
      for (int s = 0; s < 3; ++s) {
        rc.add_sequence();
        rg.add_sequence();
      }
      const std::vector<std::vector<std::vector<int32_t>>> steps = {
          {tokens(33), tokens(5), tokens(1)},
          {tokens(1), tokens(9), tokens(1)},
          {tokens(1), tokens(1), tokens(1)},
          {tokens(1), tokens(1), tokens(1)},
      };
      double worst = 0;
      for (const auto& st : steps) {
        const auto oc = rc.step({0, 1, 2}, st), og = rg.step({0, 1, 2}, st);
        for (int i = 0; i < 3; ++i)
          worst = std::max(worst, rel_error(og[size_t(i)], oc[size_t(i)]));
      }
      EXPECT_LE(worst, 6e-2);
      std::printf("fp8 kv, page %d layout %d: worst logits rel error CUDA vs CPU %.4f\n", ps,
                  int(layout), worst);
    }
}

}  // namespace
}  // namespace nc::testing

// The fused small kernels of a decode step and programmatic dependent launch (issue #16):
//   - gemv_silu_bf16 (silu_mul_linear's fused form, cuda_fused.h) against silu_and_mul followed
//     by the plain GEMV kernel: bit for bit (the same float32 operations in the same order, the
//     activation rounded to bf16 as silu_and_mul rounds it), at 1..16 rows, with bias and float32
//     output; and against the CPU backend's silu_mul_linear (float32 throughout) within kBf16Tol:
//     the GPU rounds the activation and the output to bf16 (2^-9 relative each), far below 1e-2.
//   - The backend op: fused at one row (the default), unfused beyond silu_max_rows (or up to
//     NC_FUSE_SILU_MAX_ROWS), odd shapes falling back; the same values either way.
//   - The K/V append folded into the qkv prologue (qkv_split_norm_rope_append, fused_kernels.h)
//     against the separate append inside attention(): pages and outputs bit for bit.
//   - PDL (pdl.h) on and off: bit-identical results (it moves launches, never arithmetic), and a
//     graph captured with it on keeps programmatic edges on compute capability 9.x (none off).
//   - Whole models (tiny-mistral, head_dim 64, from Hugging Face; a random Qwen3-style model of
//     head_dim 128), greedy decodes of one sequence through CUDA graphs: fusion on vs off and PDL
//     on vs off bit for bit, against the CPU within 5e-2 (the bound the model-variant tests use:
//     bf16 activations through the layers), and the batch-1 graph has two kernels per layer fewer
//     with fusion on.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "backend/cuda/gemv_kernels.h"
#include "core/error.h"
#include "golden.h"
#include "gpu_test_util.h"
#include "model/llama.h"
#include "model/model_loader.h"
#include "seq_runner.h"

namespace nc::testing {
namespace {

std::string fixtures() {
  const char* o = std::getenv("NC_FIXTURES_DIR_OVERRIDE");
  return o && *o ? o : NC_FIXTURES_DIR;
}

// Fusion is off by default (cuda_fused.h: slower on the 8B shape); the whole GPU suite runs with
// it and PDL on, so that every model test exercises them, unless the environment says
// otherwise (NC_FUSE=0 / NC_PDL=0: the A/B runs). Set before any backend is made.
class FusionOn : public ::testing::Environment {
 public:
  void SetUp() override {
    setenv("NC_FUSE", "1", 0);
    setenv("NC_PDL", "1", 0);
  }
};
[[maybe_unused]] ::testing::Environment* const kFusionOn =
    ::testing::AddGlobalTestEnvironment(new FusionOn);

// Restores the process-wide PDL switch when a test ends.
struct PdlGuard {
  bool was = true;
  PdlGuard() {
    was = std::getenv("NC_PDL") == nullptr || std::string(std::getenv("NC_PDL")) != "0";
  }
  ~PdlGuard() { cuda_set_pdl(was); }
};

// NC_FUSE=0 turns fusion off in every backend of the process: the tests of the fused ops skip.
bool fusion_env_off() {
  const char* v = std::getenv("NC_FUSE");
  return v != nullptr && std::string(v) == "0";
}
#define SKIP_WITHOUT_FUSION() \
  if (fusion_env_off()) GTEST_SKIP() << "NC_FUSE=0: fusion is off"

bool is_sm90() {
  int dev = 0, major = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  return major == 9;
}

class CudaFused : public GpuVsCpu {
 protected:
  // Runs f on the legacy default stream between device-wide synchronisations (the kernels.h
  // entry points take a stream; the backend's own is not exposed).
  template <typename F>
  void on_device(F&& f) {
    cuda_synchronize(*gpu);
    f();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
};

TEST_F(CudaFused, SiluGemvEqualsSiluAndMulThenGemv) {
  PdlGuard guard;
  struct Case {
    int64_t m, k;
  };
  for (Case c : {Case{1024, 3072}, Case{256, 512}, Case{100, 40}})
    for (int64_t rows : {1, 2, 3, 8, 16})
      for (bool f32_out : {false, true})
        for (bool bias : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "m " << c.m << " k " << c.k << " rows " << rows
                                            << " f32 " << f32_out << " bias " << bias);
          const auto [gu_c, gu] = both_random({rows, 2 * c.k}, 1.5f);
          const auto [w_c, w] = both_random({c.m, c.k}, 0.05f);
          const void *gu_p = gu.data(), *w_p = w.data();
          const DType out_dt = f32_out ? DType::F32 : DType::BF16;
          Tensor b_c =
              bias ? cpu->upload(HostTensor{{c.m}, random_vec(rng, size_t(c.m))}) : Tensor();
          Tensor b = Tensor();
          if (bias) {
            b = gpu->alloc({c.m}, out_dt);
            const std::vector<float> bv = cpu->to_host_f32(b_c);
            if (f32_out) {
              gpu->copy_from_host(b, bv.data());
            } else {
              gpu->copy_rows(gpu->upload(HostTensor{{c.m}, bv}), b);
            }
          }
          Tensor act = gpu->alloc({rows, c.k}, DType::BF16);
          Tensor fused = gpu->alloc({rows, c.m}, out_dt), plain = gpu->alloc({rows, c.m}, out_dt);
          const void* bp = bias ? b.data() : nullptr;
          for (bool pdl : {true, false}) {
            cuda_set_pdl(pdl);
            gpu->silu_and_mul(gu, act);
            on_device([&] {
              cuda::gemv_bf16(act.data(), w_p, bp, plain.data(), f32_out, rows, c.m, c.k, nullptr);
              cuda::gemv_silu_bf16(gu_p, w_p, bp, fused.data(), f32_out, rows, c.m, c.k, nullptr);
            });
            const std::vector<float> got = gpu->to_host_f32(fused);
            EXPECT_EQ(got, gpu->to_host_f32(plain)) << "pdl " << pdl;
            Tensor ref = cpu->alloc({rows, c.m}, DType::F32);
            cpu->silu_mul_linear(gu_c, w_c, b_c, ref);
            EXPECT_LE(rel_error(got, cpu->to_host_f32(ref)), kBf16Tol);
          }
        }
}

// The backend op: fused where it fits, Backend's default elsewhere; the same values both ways.
TEST_F(CudaFused, BackendOpFusesOneRowAndFallsBackElsewhere) {
  SKIP_WITHOUT_FUSION();
  CudaBackendOptions off;
  off.fuse_small_ops = false;
  std::unique_ptr<Backend> plain = make_cuda_backend(0, off);
  const int64_t M = 512, I = 768;
  const HostTensor w_h{{M, I}, random_vec(rng, size_t(M * I), 0.05f)};
  Tensor w = gpu->upload(w_h), w_plain = plain->upload(w_h), w_c = cpu->upload(w_h);
  for (int64_t T : {1, 2, 5}) {
    SCOPED_TRACE(::testing::Message() << "rows " << T);
    const HostTensor gu_h{{T, 2 * I}, random_vec(rng, size_t(T * 2 * I), 1.5f)};
    Tensor out = gpu->alloc({T, M}, DType::BF16), out_plain = plain->alloc({T, M}, DType::BF16);
    gpu->silu_mul_linear(gpu->upload(gu_h), w, Tensor(), out);  // no scratch: allocated
    plain->silu_mul_linear(plain->upload(gu_h), w_plain, Tensor(), out_plain,
                           plain->alloc({T, I}, DType::BF16));
    const std::vector<float> got = gpu->to_host_f32(out);
    // One row: the fused kernel against silu_and_mul + the GEMV linear() picks at one row.
    // More rows: both run the default (cuBLASLt), so equal as well.
    EXPECT_EQ(got, plain->to_host_f32(out_plain));
    Tensor ref = cpu->alloc({T, M}, DType::F32);
    cpu->silu_mul_linear(cpu->upload(gu_h), w_c, Tensor(), ref);
    EXPECT_LE(rel_error(got, cpu->to_host_f32(ref)), kBf16Tol);
  }
  // I % 8 != 0: the GEMV cannot take it; the default runs and still computes the product.
  const int64_t I2 = 12;
  const HostTensor gu2{{1, 2 * I2}, random_vec(rng, size_t(2 * I2))};
  const HostTensor w2{{M, I2}, random_vec(rng, size_t(M * I2), 0.2f)};
  Tensor out2 = gpu->alloc({1, M}, DType::BF16), ref2 = cpu->alloc({1, M}, DType::F32);
  gpu->silu_mul_linear(gpu->upload(gu2), gpu->upload(w2), Tensor(), out2);
  cpu->silu_mul_linear(cpu->upload(gu2), cpu->upload(w2), Tensor(), ref2);
  EXPECT_LE(rel_error(gpu->to_host_f32(out2), cpu->to_host_f32(ref2)), kBf16Tol);
}

// NC_FUSE_SILU_MAX_ROWS: up to 8 rows fused (the GEMV against cuBLASLt's product: bf16 tolerance
// of each other and of the CPU); a value outside 0..16 is an nc::Error naming it.
TEST_F(CudaFused, SiluMaxRowsFromTheEnvironment) {
  SKIP_WITHOUT_FUSION();
  const char* old = std::getenv("NC_FUSE_SILU_MAX_ROWS");
  const std::string saved = old ? old : "";
  setenv("NC_FUSE_SILU_MAX_ROWS", "8", 1);
  std::unique_ptr<Backend> wide = make_cuda_backend(0);
  setenv("NC_FUSE_SILU_MAX_ROWS", "17", 1);
  try {
    make_cuda_backend(0);
    ADD_FAILURE() << "NC_FUSE_SILU_MAX_ROWS=17 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NC_FUSE_SILU_MAX_ROWS=17"), std::string::npos)
        << e.what();
  }
  if (old) {
    setenv("NC_FUSE_SILU_MAX_ROWS", saved.c_str(), 1);
  } else {
    unsetenv("NC_FUSE_SILU_MAX_ROWS");
  }
  const int64_t M = 384, I = 1024;
  const HostTensor w_h{{M, I}, random_vec(rng, size_t(M * I), 0.05f)};
  Tensor w_wide = wide->upload(w_h), w = gpu->upload(w_h), w_c = cpu->upload(w_h);
  for (int64_t T : {2, 5, 8}) {
    SCOPED_TRACE(::testing::Message() << "rows " << T);
    const HostTensor gu_h{{T, 2 * I}, random_vec(rng, size_t(T * 2 * I), 1.5f)};
    Tensor o_wide = wide->alloc({T, M}, DType::BF16), o = gpu->alloc({T, M}, DType::BF16);
    wide->silu_mul_linear(wide->upload(gu_h), w_wide, Tensor(), o_wide);
    gpu->silu_mul_linear(gpu->upload(gu_h), w, Tensor(), o);  // one row only: not fused here
    Tensor ref = cpu->alloc({T, M}, DType::F32);
    cpu->silu_mul_linear(cpu->upload(gu_h), w_c, Tensor(), ref);
    const std::vector<float> got = wide->to_host_f32(o_wide);
    EXPECT_LE(rel_error(got, gpu->to_host_f32(o)), kBf16Tol);
    EXPECT_LE(rel_error(got, cpu->to_host_f32(ref)), kBf16Tol);
  }
}

// A chain of GEMVs and norms captured into a graph: the same output with PDL on and off, and
// programmatic edges in the graph only with it on (only on 9.x).
TEST_F(CudaFused, PdlKeepsResultsAndGraphEdges) {
  SKIP_WITHOUT_FUSION();
  PdlGuard guard;
  const int64_t H = 1024, I = 3072;
  const Tensor x = both_random({1, H}).second, wu = both_random({2 * I, H}, 0.03f).second;
  const Tensor wd = both_random({H, I}, 0.02f).second, n = both_random({H}, 0.1f).second;
  Tensor gu = gpu->alloc({1, 2 * I}, DType::BF16), h = gpu->alloc({1, H}, DType::BF16);
  Tensor res = gpu->alloc({1, H}, DType::BF16);
  auto chain = [&] {
    gpu->copy_rows(x, h);
    gpu->copy_rows(x, res);
    for (int i = 0; i < 3; ++i) {
      gpu->add_rmsnorm(h, res, n, 1e-6f);
      gpu->linear(h, wu, Tensor(), gu);
      gpu->silu_mul_linear(gu, wd, Tensor(), h);
    }
  };
  std::vector<std::vector<float>> outs;
  std::vector<CudaGraphStats> stats;
  for (bool pdl : {true, false}) {
    cuda_set_pdl(pdl);
    EXPECT_EQ(cuda_pdl_enabled(), pdl && is_sm90());
    chain();
    outs.push_back(gpu->to_host_f32(h));
    const int key = pdl ? 7 : 8;
    gpu->begin_capture();
    chain();
    gpu->end_capture(key);
    gpu->replay(key);
    EXPECT_EQ(gpu->to_host_f32(h), outs.back()) << "graph replay, pdl " << pdl;
    stats.push_back(cuda_graph_stats(*gpu, key));
  }
  EXPECT_EQ(outs[0], outs[1]);
  for (const CudaGraphStats& st : stats) EXPECT_EQ(st.kernels, 3 * 3);  // norm, gemv, fused gemv
  std::printf("graph with PDL: %d nodes, %d kernels, %d programmatic edges (without: %d)\n",
              stats[0].nodes, stats[0].kernels, stats[0].programmatic_edges,
              stats[1].programmatic_edges);
  EXPECT_EQ(stats[1].programmatic_edges, 0);
  if (is_sm90()) {
    EXPECT_GT(stats[0].programmatic_edges, 0);
  } else {
    EXPECT_EQ(stats[0].programmatic_edges, 0);
  }
  EXPECT_EQ(cuda_graph_stats(*gpu, 12345).kernels, 0);  // no such graph
}

// qkv_split_norm_rope_append + attention_appended against qkv_split_norm_rope + attention over the
// same eager plan (a prefill chunk next to two decodes): q, k, v, the pages and the attention
// output bit for bit (the append copies the same bf16 values the fused kernel stores); with
// fusion off the op only splits and says so.
TEST_F(CudaFused, FusedAppendEqualsSeparateAppend) {
  SKIP_WITHOUT_FUSION();
  CudaBackendOptions off;
  off.fuse_small_ops = false;
  std::unique_ptr<Backend> plain = make_cuda_backend(0, off);
  const int Hq = 4, Hk = 2, max_pos = 64;
  for (int D : {64, 128})
    for (int ps : {1, 16})
      for (KVLayout layout : {KVLayout::NHD, KVLayout::HND}) {
        SCOPED_TRACE(::testing::Message()
                     << "D " << D << " page " << ps << " hnd " << (layout == KVLayout::HND));
        // Entries: 5 new tokens (a prefill), then decodes at kv_len 20 and 3.
        const std::vector<int> q_len = {5, 1, 1}, kv_len = {5, 20, 3};
        AttentionStep step{7, {}};
        PagedKVBatch own;
        std::vector<int32_t> positions;
        int next_page = 0;
        for (size_t b = 0; b < q_len.size(); ++b) {
          std::vector<int32_t> pages;
          for (int i = 0; i < (kv_len[b] + ps - 1) / ps; ++i) pages.push_back(next_page++);
          own.add(q_len[b], pages, kv_len[b], ps);
          for (int i = 0; i < q_len[b]; ++i) positions.push_back(kv_len[b] - q_len[b] + i);
        }
        step.levels = {own};
        const int num_pages = next_page + 2;
        AttentionShape shape{Hq, Hk, D, 1.0f / std::sqrt(float(D)),
                             KVCacheShape{1, num_pages, ps, Hk, D, layout}};
        const int64_t T = 7, W = int64_t(Hq + 2 * Hk) * D;
        const HostTensor pages_h{{num_pages, 2, ps, Hk, D},
                                 random_vec(rng, size_t(num_pages) * shape.kv.elems_per_page())};
        Tensor pages_a = gpu->upload(pages_h), pages_b = gpu->upload(pages_h);
        Tensor qkv = gpu->upload(HostTensor{{T, W}, random_vec(rng, size_t(T * W))});
        Tensor qn = gpu->upload(HostTensor{{D}, random_vec(rng, size_t(D), 0.1f)});
        Tensor kn = gpu->upload(HostTensor{{D}, random_vec(rng, size_t(D), 0.1f)});
        Tensor pos = gpu->alloc({T}, DType::I32);
        gpu->copy_from_host(pos, positions.data());
        std::vector<float> table(size_t(max_pos * D));
        for (int p = 0; p < max_pos; ++p)
          for (int i = 0; i < D / 2; ++i) {
            const float a = float(p) / std::pow(10000.0f, float(2 * i) / float(D));
            table[size_t(p * D + i)] = std::cos(a);
            table[size_t(p * D + D / 2 + i)] = std::sin(a);
          }
        Tensor cs = gpu->alloc({max_pos, D}, DType::F32);
        gpu->copy_from_host(cs, table.data());
        auto qkv_out = [&] {
          return std::vector<Tensor>{
              gpu->alloc({T, Hq * D}, DType::BF16), gpu->alloc({T, Hk * D}, DType::BF16),
              gpu->alloc({T, Hk * D}, DType::BF16), gpu->alloc({T, Hq * D}, DType::BF16)};
        };
        std::vector<Tensor> a = qkv_out(), b = qkv_out();
        std::unique_ptr<AttentionPlan> plan = gpu->plan_attention(step, shape);
        gpu->qkv_split_norm_rope(qkv, qn, kn, 1e-6f, pos, cs, D, a[0], a[1], a[2]);
        gpu->attention(*plan, a[0], a[1], a[2], pages_a, a[3]);
        ASSERT_TRUE(gpu->qkv_split_norm_rope_append(*plan, pages_b, qkv, qn, kn, 1e-6f, pos, cs, D,
                                                    b[0], b[1], b[2]));
        gpu->attention_appended(*plan, b[0], b[1], b[2], pages_b, b[3]);
        for (size_t i = 0; i < a.size(); ++i)
          EXPECT_EQ(gpu->to_host_f32(a[i]), gpu->to_host_f32(b[i])) << "tensor " << i;
        EXPECT_EQ(gpu->to_host_f32(pages_a), gpu->to_host_f32(pages_b));
        EXPECT_NE(gpu->to_host_f32(pages_a), std::vector<float>(pages_h.data)) << "no append";
        // Fusion off: the op splits only; attention() appends as before.
        std::unique_ptr<AttentionPlan> plain_plan = plain->plan_attention(step, shape);
        Tensor pp = plain->upload(pages_h);
        Tensor pq = plain->alloc({T, Hq * D}, DType::BF16),
               pk = plain->alloc({T, Hk * D}, DType::BF16),
               pv = plain->alloc({T, Hk * D}, DType::BF16),
               po = plain->alloc({T, Hq * D}, DType::BF16);
        Tensor ppos = plain->alloc({T}, DType::I32), pcs = plain->alloc({max_pos, D}, DType::F32);
        plain->copy_from_host(ppos, positions.data());
        plain->copy_from_host(pcs, table.data());
        Tensor pqkv = plain->alloc({T, W}, DType::BF16);
        plain->copy_from_host(pqkv, std::vector<uint16_t>(size_t(T * W)).data());
        EXPECT_FALSE(plain->qkv_split_norm_rope_append(*plain_plan, pp, pqkv, Tensor(), Tensor(),
                                                       1e-6f, ppos, pcs, D, pq, pk, pv));
        EXPECT_EQ(plain->to_host_f32(pp), std::vector<float>(pages_h.data)) << "appended anyway";
      }
}

// A random model of head_dim 128 (Qwen3-style q/k norms), 3 layers.
ModelConfig hd128_config() {
  ModelConfig c;
  c.architecture = "qwen3";
  c.num_layers = 3;
  c.hidden_size = 512;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 128;
  c.intermediate_size = 1024;
  c.vocab_size = 1000;
  c.max_position = 1024;
  c.rms_eps = 1e-6;
  c.qk_norm = true;
  return c;
}

struct Models {
  std::unique_ptr<LlamaModel> fused, plain, cpu;
};

// One sequence: the prompt prefilled, then `steps` greedy decodes (the CPU's argmax fed to all):
// fused vs plain logits bit for bit at every step; returns the worst relative error vs the CPU
// and appends the fused model's logits to `fused_out`.
double decode_one(Models& m, const std::vector<int32_t>& prompt, int steps,
                  std::vector<std::vector<float>>& fused_out) {
  SeqRunner rf(*m.fused, 16, 64), rp(*m.plain, 16, 64), rc(*m.cpu, 16, 64);
  rf.add_sequence(), rp.add_sequence(), rc.add_sequence();
  std::vector<int32_t> toks = prompt;
  double worst = 0;
  for (int s = 0; s <= steps; ++s) {
    const auto of = rf.step({0}, {toks}), op = rp.step({0}, {toks}), oc = rc.step({0}, {toks});
    EXPECT_EQ(of[0], op[0]) << "step " << s;
    fused_out.push_back(of[0]);
    worst = std::max(worst, rel_error(of[0], oc[0]));
    const int64_t V = m.cpu->config().vocab_size;
    const float* last = oc[0].data() + oc[0].size() - size_t(V);
    toks = {int32_t(std::max_element(last, last + V) - last)};
  }
  return worst;
}

class CudaFusedModel : public GpuVsCpu {
 protected:
  // Fusion on against off (two backends of their own), both with graphs; PDL on in
  // the first pass, off in the second: all four runs equal bit for bit.
  template <typename MakeModel>
  void check(const char* name, MakeModel&& make, const std::vector<int32_t>& prompt) {
    SCOPED_TRACE(name);
    PdlGuard guard;
    // Both op by op (the whole-layer kernel, which Auto takes for layers this small, would leave
    // nothing to fuse), fused or not.
    CudaBackendOptions fused_opt, plain_opt;
    fused_opt.decode_layer = plain_opt.decode_layer = DecodeLayerMode::Off;
    plain_opt.fuse_small_ops = false;
    std::unique_ptr<Backend> fused_backend = make_cuda_backend(0, fused_opt);
    std::unique_ptr<Backend> plain_backend = make_cuda_backend(0, plain_opt);
    std::vector<std::vector<float>> passes[2];
    for (bool pdl : {true, false}) {
      cuda_set_pdl(pdl);
      Models m{make(*fused_backend), make(*plain_backend), make(*cpu)};
      m.fused->set_graph_options(GraphOptions{true, 16});
      m.plain->set_graph_options(GraphOptions{true, 16});
      const double worst = decode_one(m, prompt, 6, passes[pdl ? 0 : 1]);
      std::printf("%s (pdl %d): worst logits rel error vs CPU %.2e\n", name, int(pdl), worst);
      EXPECT_LE(worst, 5e-2);
      EXPECT_EQ(m.fused->num_graph_steps(), 6);
      // Only the batch-1 bucket was captured: two kernels per layer fewer (silu_and_mul folded
      // into the down projection, the K/V append into the qkv prologue).
      const std::vector<int> keys = cuda_graph_keys(*fused_backend);
      ASSERT_EQ(keys, cuda_graph_keys(*plain_backend));
      ASSERT_FALSE(keys.empty());
      for (int key : keys) {
        const int on = cuda_graph_stats(*fused_backend, key).kernels;
        const int not_fused = cuda_graph_stats(*plain_backend, key).kernels;
        std::printf("%s graph %d: %d kernels fused, %d not\n", name, key, on, not_fused);
        EXPECT_EQ(not_fused - on, 2 * m.fused->config().num_layers) << "graph " << key;
      }
    }
    EXPECT_EQ(passes[0], passes[1]) << "PDL on vs off";
  }
};

TEST_F(CudaFusedModel, TinyMistralHd64FusedMatchesUnfusedAndCpu) {
  SKIP_WITHOUT_FUSION();
  LoadedModel lm = load_model(fixtures() + "/tiny-mistral");
  for (auto& [name, t] : lm.weights)
    if (!t.is_raw())
      for (float& x : t.data) x = round_bf16(x);
  const std::vector<GoldenPrompt> golden = read_golden(fixtures() + "/tiny-mistral");
  ASSERT_FALSE(golden.empty());
  check(
      "tiny-mistral",
      [&](Backend& b) { return std::make_unique<LlamaModel>(lm.config, lm.weights, b); },
      golden[0].ids);
}

TEST_F(CudaFusedModel, RandomHd128FusedMatchesUnfusedAndCpu) {
  SKIP_WITHOUT_FUSION();
  const ModelConfig cfg = hd128_config();
  check("random hd128",
        [&](Backend& b) { return std::make_unique<LlamaModel>(cfg, RandomWeights{77}, b); },
        {5, 17, 230, 999, 0, 41, 7, 300, 12});
}

}  // namespace
}  // namespace nc::testing

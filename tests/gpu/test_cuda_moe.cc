// The CUDA backend's MoE ops (backend/cuda/cuda_moe.h, moe.cu) against the CPU backend: routing
// in every mode (the same experts, weights within float rounding), the experts (bf16 tolerance),
// batch invariance on the device (a token's output bit for bit the same alone and in a batch),
// and the whole tiny Qwen3-MoE fixture with head_dim 64 (graphs on: test_cuda_moe_mla_graphs.cc
// checks them against eager steps).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "golden.h"
#include "gpu_test_util.h"
#include "model/model_loader.h"
#include "seq_runner.h"

namespace nc::testing {
namespace {

// The fixtures folder (a GPU bundle moves it: NC_FIXTURES_DIR_OVERRIDE, tools/gpu_check.sh).
std::string fixtures() {
  const char* o = std::getenv("NC_FIXTURES_DIR_OVERRIDE");
  return o && *o ? o : NC_FIXTURES_DIR;
}

std::vector<int32_t> ids_to_host(Backend& gpu, const Tensor& t) {
  cuda_synchronize(gpu);
  std::vector<int32_t> out(size_t(t.numel()));
  EXPECT_EQ(cudaMemcpy(out.data(), t.data(), t.nbytes(), cudaMemcpyDeviceToHost), cudaSuccess);
  return out;
}

using CudaMoe = GpuVsCpu;

TEST_F(CudaMoe, RoutingMatchesCpuInEveryMode) {
  const MoeRouting modes[] = {
      {.num_experts = 8, .top_k = 2, .renormalize = true},  // Qwen3-MoE
      {.num_experts = 64, .top_k = 6, .scaling = 1.0f},     // V2-Lite greedy
      {.num_experts = 16, .top_k = 3, .n_group = 4, .topk_group = 2, .scaling = 2.5f},  // V2
      {.num_experts = 32,
       .top_k = 4,
       .scoring = MoeScoring::Sigmoid,
       .n_group = 8,
       .topk_group = 3,
       .renormalize = true,
       .scaling = 2.5f},  // V3 noaux_tc
      // The real sizes: Qwen3-30B-A3B (4 experts a lane of the routing warp) and DeepSeek-V3
      // (8 a lane, 8 groups of 32).
      {.num_experts = 128, .top_k = 8, .renormalize = true},
      {.num_experts = 256,
       .top_k = 8,
       .scoring = MoeScoring::Sigmoid,
       .n_group = 8,
       .topk_group = 4,
       .renormalize = true,
       .scaling = 2.5f}};
  for (const MoeRouting& r : modes) {
    SCOPED_TRACE(r.num_experts);
    const int64_t T = 37, E = r.num_experts, k = r.top_k;
    std::vector<float> logits = random_vec(rng, size_t(T * E), 2.0f);
    HostTensor lh{{T, E}, logits};
    Tensor lc = cpu->upload(lh), lg = gpu->alloc({T, E}, DType::F32);
    gpu->copy_from_host(lg, logits.data());
    Tensor bc, bg;
    if (r.has_bias()) {
      std::vector<float> bias = random_vec(rng, size_t(E), 0.3f);
      bc = cpu->upload(HostTensor{{E}, bias});
      bg = gpu->alloc({E}, DType::F32);
      gpu->copy_from_host(bg, bias.data());
    }
    Tensor ic = cpu->alloc({T, k}, DType::I32), wc = cpu->alloc({T, k}, DType::F32);
    Tensor ig = gpu->alloc({T, k}, DType::I32), wg = gpu->alloc({T, k}, DType::F32);
    cpu->moe_route(lc, bc, r, ic, wc);
    gpu->moe_route(lg, bg, r, ig, wg);
    const std::vector<int32_t> want(ic.ptr<int32_t>(), ic.ptr<int32_t>() + T * k);
    EXPECT_EQ(ids_to_host(*gpu, ig), want);
    EXPECT_LE(rel_error(gpu->to_host_f32(wg), cpu->to_host_f32(wc)), 1e-6);
  }
}

TEST_F(CudaMoe, ExpertsMatchCpuAndAreBatchInvariant) {
  const int64_t E = 8, H = 128, I = 96, k = 2, T = 70;  // more rows than one 64-row tile
  auto [gu_c, gu_g] = both_random({E, 2 * I, H}, 0.1f);
  auto [dn_c, dn_g] = both_random({E, H, I}, 0.1f);
  auto [xc, xg] = both_random({T, H});
  std::vector<int32_t> ids;
  std::vector<float> w;
  std::uniform_int_distribution<int> pick(0, int(E) - 1);
  for (int64_t t = 0; t < T; ++t) {
    const int a = t < 40 ? 3 : pick(rng);  // expert 3 gets a segment longer than a tile
    ids.insert(ids.end(), {a, (a + 1 + pick(rng) % (int(E) - 1)) % int(E)});
    w.insert(w.end(), {0.7f, 0.3f});
  }
  auto [ic, ig] = both_i32(ids);
  Tensor wc = cpu->upload(HostTensor{{T, k}, w}), wg = gpu->alloc({T, k}, DType::F32);
  gpu->copy_from_host(wg, w.data());  // routing weights stay float32 on the device
  Tensor ic2 = ic.view({T, k}), ig2 = ig.view({T, k});
  auto [oc, og] = outputs({T, H});
  cpu->moe_experts(xc, ic2, wc, gu_c, dn_c, oc);
  gpu->moe_experts(xg, ig2, wg, gu_g, dn_g, og);
  const double e = err(*gpu, og, oc);
  std::printf("moe_experts T=%lld: rel error GPU vs CPU %.2e\n", (long long)T, e);
  EXPECT_LE(e, kBf16Tol);
  // Token 45 alone gives the same bits as inside the batch.
  const int64_t probe = 45;
  Tensor alone = gpu->alloc({1, H}, DType::BF16);
  gpu->moe_experts(xg.slice(probe, probe + 1), ig2.slice(probe, probe + 1),
                   wg.slice(probe, probe + 1), gu_g, dn_g, alone);
  const std::vector<float> batch = gpu->to_host_f32(og);
  const std::vector<float> one = gpu->to_host_f32(alone);
  for (int64_t h = 0; h < H; ++h) ASSERT_EQ(one[size_t(h)], batch[size_t(probe * H + h)]) << h;
}

// The tiny Qwen3-MoE fixture of head_dim 64 (tiny-qwen3-moe's 32 is no CUDA attention head dim;
// weights rounded to bf16) through prefill and decode steps, decodes through CUDA graphs,
// against the CPU backend.
TEST_F(CudaMoe, TinyQwen3MoeMatchesCpu) {
  LoadedModel lm = load_model(fixtures() + "/tiny-qwen3-moe-hd64");
  for (auto& [name, t] : lm.weights)
    if (!t.is_raw())
      for (float& x : t.data) x = round_bf16(x);
  const std::vector<GoldenPrompt> golden = read_golden(fixtures() + "/tiny-qwen3-moe-hd64");
  LlamaModel mc(lm.config, lm.weights, *cpu), mg(lm.config, lm.weights, *gpu);
  mg.set_graph_options(GraphOptions{true, 16});
  SeqRunner rc(mc, 4, 256), rg(mg, 4, 256);
  double worst = 0;
  std::vector<int> seqs;
  for (size_t p = 0; p < golden.size(); ++p) seqs.push_back(rc.add_sequence()), rg.add_sequence();
  std::vector<std::vector<int32_t>> step;
  for (const GoldenPrompt& g : golden) step.push_back(g.ids);
  for (int d = 0; d < 8; ++d) {
    const auto oc = rc.step(seqs, step);
    const auto og = rg.step(seqs, step);
    for (size_t i = 0; i < oc.size(); ++i) worst = std::max(worst, rel_error(og[i], oc[i]));
    for (size_t p = 0; p < golden.size(); ++p) step[p] = {golden[p].greedy[size_t(d)]};
  }
  std::printf("tiny-qwen3-moe-hd64: worst logits rel error GPU vs CPU %.2e\n", worst);
  // tiny-qwen3-moe-hd64's router margins are below bf16's rounding (docs/golden.md, "MoE router
  // margins": smallest top-k gap 1.2e-3 in layer 1 against a bf16 shift of ~3.8e-2): the GPU's
  // bf16 activations flip one routing decision there, and one flip of that decision on the CPU
  // moves the logits by 0.109 (tools/moe_router_margins.py; the GPU measured 0.112 on the H100,
  // 2026-12-05). So against the CPU this fixture only bounds gross errors; the experts and the
  // routing themselves are held to bf16 tolerance by the CudaMoe unit tests and tiny-deepseek-v2.
  EXPECT_LE(worst, 0.2);
  EXPECT_EQ(mg.num_graph_steps(), 7);  // every decode step (the first step is the prefill)
}

}  // namespace
}  // namespace nc::testing

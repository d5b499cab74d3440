// Whole models with FP8 linear layers on the CUDA backend (backend/cuda/fp8_gemm.h) against the
// CPU backend: tiny-llama-fp8 (a Hugging Face FP8 checkpoint: per-channel and per-tensor weight
// scales, static input scales) and tiny-llama quantised at load (--quantization fp8). The fused
// q/k/v and gate/up weights are FP8 (stack_fp8_weights); the embeddings and LM head stay bf16.
// Other weights are rounded to bf16 first, so both backends hold the same values and the same
// e4m3 codes. Prefill steps run eagerly; decode steps run through CUDA graphs on one GPU model
// and eagerly on another, in batches that fill their bucket (graph and eager then run the same
// kernels on the same shapes: bit for bit) and padded ones.
//
// Tolerance against the CPU: the GPU keeps activations in bf16 between ops (2^-9 relative), and
// a value that moves by that much can cross an e4m3 rounding boundary (steps of 2^-4..2^-3
// relative): about 1 in 16..32 activation codes differ by one step between the backends, which
// puts ~1-2% of relative noise on each quantised product and compounds over the layers. Logits
// within 6e-2 (relative, per position), and the greedy token equal wherever the CPU's top two
// logits are at least 5% of the largest logit apart (a smaller gap can flip on that noise).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "backend/cuda/fp8_gemm.h"
#include "golden.h"
#include "gpu_test_util.h"
#include "model/fp8_load.h"
#include "model/model_loader.h"
#include "seq_runner.h"

namespace nc::testing {
namespace {

constexpr double kLogitTol = 6e-2;

std::string fixtures() {
  const char* o = std::getenv("NC_FIXTURES_DIR_OVERRIDE");
  return o && *o ? o : NC_FIXTURES_DIR;
}

class CudaFp8Model : public GpuVsCpu {
 protected:
  void check(const std::string& fixture, bool quantise_at_load);

  double worst_cpu = 0;
  int checked_tokens = 0;
  // Every row of `got` (GPU) against `want` (CPU): relative error, and the argmax where the CPU's
  // margin is clear.
  void against_cpu(const std::vector<float>& got, const std::vector<float>& want, int64_t V,
                   const std::string& what) {
    for (size_t r = 0; r * size_t(V) < want.size(); ++r) {
      const float* g = got.data() + r * V;
      const float* w = want.data() + r * V;
      const double e = rel_err(g, w, size_t(V));
      worst_cpu = std::max(worst_cpu, e);
      EXPECT_LE(e, kLogitTol) << what << " row " << r;
      std::vector<float> sorted(w, w + V);
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
      float amax = 0;
      for (int64_t i = 0; i < V; ++i) amax = std::max(amax, std::fabs(w[i]));
      if (sorted[0] - sorted[1] < 0.05f * amax) continue;
      EXPECT_EQ(argmax(g, V), argmax(w, V)) << what << " row " << r;
      ++checked_tokens;
    }
  }
};

void CudaFp8Model::check(const std::string& fixture, bool quantise_at_load) {
  SCOPED_TRACE(fixture);
  const std::string dir = fixtures() + "/" + fixture;
  LoadedModel lm = load_model(dir);
  if (quantise_at_load) lm.config.quantization = "fp8";
  ASSERT_EQ(lm.config.quantization, "fp8");
  for (auto& [name, w] : lm.weights)
    if (!w.is_raw())
      for (float& x : w.data) x = round_bf16(x);
  std::vector<GoldenPrompt> golden = read_golden(dir);
  golden.resize(std::min<size_t>(golden.size(), 3));
  golden.push_back(golden[0]);  // 4 sequences
  auto gpu2 = make_cuda_backend(0);
  LlamaModel mg(lm.config, lm.weights, *gpu), me(lm.config, lm.weights, *gpu2),
      mc(lm.config, lm.weights, *cpu);
  mg.set_graph_options(GraphOptions{true, 16});
  SeqRunner rg(mg, 4, 256), re(me, 4, 256), rc(mc, 4, 256);
  std::vector<int> all;
  std::vector<std::vector<int32_t>> prompts;
  for (const GoldenPrompt& g : golden) {
    all.push_back(rg.add_sequence()), re.add_sequence(), rc.add_sequence();
    prompts.push_back(g.ids);
  }
  const int64_t V = lm.config.vocab_size;
  int d = 0, exact_steps = 0;
  double worst_padded = 0;
  auto run = [&](const std::vector<int>& ids, const std::vector<std::vector<int32_t>>& toks,
                 bool exact) {
    const auto og = rg.step(ids, toks), oe = re.step(ids, toks), oc = rc.step(ids, toks);
    for (size_t i = 0; i < ids.size(); ++i) {
      const std::string what = "step " + std::to_string(d) + " sequence " + std::to_string(ids[i]);
      if (exact)
        EXPECT_EQ(og[i], oe[i]) << what;
      else
        worst_padded = std::max(worst_padded, rel_error(og[i], oe[i]));
      against_cpu(og[i], oc[i], V, what + " (graphs)");
      against_cpu(oe[i], oc[i], V, what + " (eager)");
    }
    exact_steps += exact;
  };
  run(all, prompts, false);  // prefill: eager on both GPU models
  auto decode = [&](const std::vector<int>& ids) {
    std::vector<std::vector<int32_t>> toks;
    for (int s : ids) toks.push_back({golden[size_t(s)].greedy[size_t(d)]});
    ++d;
    run(ids, toks, ids.size() == 1 || ids.size() == 2 || ids.size() == 4);
  };
  for (const std::vector<int>& ids : std::vector<std::vector<int>>{
           {0, 1, 2, 3}, {0, 1, 2, 3}, {1, 3}, {2}, {0, 2, 3}, {0, 1, 2, 3}, {1, 3}})
    decode(ids);
  std::printf("%s%s: fp8 cuda vs cpu worst %.2e, graph vs eager (padded) %.2e, %d tokens checked\n",
              fixture.c_str(), quantise_at_load ? " (quantised at load)" : "", worst_cpu,
              worst_padded, checked_tokens);
  EXPECT_EQ(mg.num_graph_steps(), d);
  EXPECT_EQ(me.num_graph_steps(), 0);
  EXPECT_GT(exact_steps, 0);
  EXPECT_LE(worst_padded, kLogitTol);
  EXPECT_GT(checked_tokens, 20);
}

TEST_F(CudaFp8Model, Fp8CheckpointMatchesCpuWithAndWithoutGraphs) {
  check("tiny-llama-fp8", false);
}

TEST_F(CudaFp8Model, QuantisedAtLoadMatchesCpuWithAndWithoutGraphs) {
  check("tiny-llama", true);
}

// The linear layers hold one byte a weight plus their scales on the GPU as on the CPU
// (LlamaModel::weight_bytes counts the packed FP8 tensors; the rest is bf16 here, float32 there).
TEST_F(CudaFp8Model, Fp8LinearWeightsAreOneByteAWeight) {
  LoadedModel lm = load_model(fixtures() + "/tiny-llama");
  const LlamaModel bf16(lm.config, lm.weights, *gpu);
  lm.config.quantization = "fp8";
  const LlamaModel fp8(lm.config, lm.weights, *gpu);
  int64_t linear_values = 0;
  for (const auto& [name, t] : lm.weights)
    if (is_fp8_linear_name(name)) linear_values += t.numel();
  const int64_t saved = bf16.weight_bytes() - fp8.weight_bytes();
  EXPECT_GT(saved, linear_values * 9 / 10);  // 2 bytes -> 1 byte, less the scales and padding
  EXPECT_LE(saved, linear_values);
}

}  // namespace
}  // namespace nc::testing

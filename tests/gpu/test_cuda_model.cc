// The decoder on the CUDA backend against the same decoder on the CPU backend: synthetic models
// (Llama, Qwen2 with q/k/v bias, Qwen3 with q/k norm; head_dim 64) over steps that mix prefill
// chunks and decodes, and SmolLM2-135M on the golden prompts (greedy continuation agrees with the
// CPU backend and with Hugging Face transformers).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>

#include "golden.h"
#include "gpu_test_util.h"
#include "model/model_loader.h"
#include "seq_runner.h"
#include "synthetic_model.h"

namespace nc::testing {
namespace {

std::string fixtures() {
  const char* o = std::getenv("NC_FIXTURES_DIR_OVERRIDE");
  return o && *o ? o : NC_FIXTURES_DIR;
}

int32_t argmax_of(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return int32_t(best);
}

using CudaModel = GpuVsCpu;

// Logits of every new token agree (bf16 activations through 2 layers: 2e-2 relative).
TEST_F(CudaModel, SyntheticModelsMatchCpu) {
  for (const char* arch : {"llama", "qwen2", "qwen3"})
    for (int page_size : {1, 16})
      for (KVLayout layout : {KVLayout::NHD, KVLayout::HND}) {
        SCOPED_TRACE(std::string(arch) + " page " + std::to_string(page_size));
        const ModelConfig cfg = synthetic_config(arch);
        const WeightMap w = synthetic_weights(cfg, rng);
        LlamaModel mc(cfg, w, *cpu), mg(cfg, w, *gpu);
        SeqRunner rc(mc, page_size, 512, layout), rg(mg, page_size, 512, layout);
        std::uniform_int_distribution<int32_t> tok(0, int32_t(cfg.vocab_size) - 1);
        auto tokens = [&](int n) {
          std::vector<int32_t> t(n);
          for (auto& x : t) x = tok(rng);
          return t;
        };
        for (int s = 0; s < 3; ++s) {
          rc.add_sequence();
          rg.add_sequence();
        }
        // Prefills of different lengths, then a chunk next to decodes, then decodes.
        const std::vector<std::vector<std::vector<int32_t>>> steps = {
            {tokens(17), tokens(5), tokens(1)},
            {tokens(1), tokens(9), tokens(1)},
            {tokens(1), tokens(1), tokens(1)},
        };
        for (const auto& st : steps) {
          auto oc = rc.step({0, 1, 2}, st);
          auto og = rg.step({0, 1, 2}, st);
          for (int i = 0; i < 3; ++i) EXPECT_LE(rel_error(og[i], oc[i]), 2e-2) << "seq " << i;
        }
      }
}

std::string smollm2_path() {
  const char* env = std::getenv("NC_MODEL_PATH");
  return env && *env ? env : std::string(NC_DEFAULT_MODEL_DIR) + "/SmolLM2-135M-Instruct.Q4_1.gguf";
}

// SmolLM2-135M-Instruct (GGUF Q4_1; head_dim 64, 9 query / 3 kv heads) on the golden prompts.
//
// Teacher-forced: each prompt followed by its golden greedy continuation (from transformers,
// which the CPU backend reproduces exactly, see test_model_golden.cc) is prefilled in one step
// on both backends, giving logits at every continuation position. bf16 weights and activations
// move logits by a few percent, so an exact argmax match at every position is not a property of
// a correct bf16 backend (near-ties flip); what is: at every position the GPU's greedy token is
// one the CPU model rates within kNearTie of its best, and most positions match exactly.
// For scale, transformers itself in bf16 against float32 on these same sequences (CPU, measured
// 2026-11-26 on golden.json): worst per-position logits error 0.029-0.114 per prompt, argmax
// equal at 152 of 160 positions. The bounds below are at that level.
// A free-running greedy continuation is compared too, up to the first such near-tie.
TEST_F(CudaModel, SmolLM2GreedyAgreesWithCpu) {
  const std::string path = smollm2_path();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not found at " << path;
  std::vector<GoldenPrompt> golden = read_golden(fixtures() + "/smollm2");
  ASSERT_GE(golden.size(), 3u);
  LoadedModel lm = load_model(path);
  const int64_t V = lm.config.vocab_size;
  constexpr float kNearTie = 0.5f;  // logits (SmolLM2's top logits are ~15-25)

  LlamaModel mc(lm.config, lm.weights, *cpu), mg(lm.config, lm.weights, *gpu);
  int exact = 0, total = 0;
  for (size_t p = 0; p < golden.size(); ++p) {
    std::vector<int32_t> seq = golden[p].ids;
    seq.insert(seq.end(), golden[p].greedy.begin(), golden[p].greedy.end() - 1);
    SeqRunner rc(mc, 16, 256), rg(mg, 16, 256);
    rc.add_sequence();
    rg.add_sequence();
    const std::vector<float> lc = rc.step({0}, {seq})[0], lg = rg.step({0}, {seq})[0];
    const size_t first = golden[p].ids.size() - 1;  // row predicting the first new token
    double worst = 0;
    for (size_t r = first; r < seq.size(); ++r) {
      const float* c = lc.data() + r * V;
      const float* g = lg.data() + r * V;
      const int32_t want = argmax_of(c, V), got = argmax_of(g, V);
      EXPECT_EQ(want, golden[p].greedy[r - first]) << "CPU backend vs transformers";
      ++total;
      exact += want == got;
      EXPECT_LT(c[want] - c[got], kNearTie)
          << "prompt " << p << " position " << r << ": GPU picks " << got << ", CPU " << want;
      worst =
          std::max(worst, rel_error(std::vector<float>(g, g + V), std::vector<float>(c, c + V)));
    }
    EXPECT_LE(worst, 0.12) << "prompt " << p;
    std::printf("prompt %zu: worst logits rel error %.4f\n", p, worst);

    // Free-running greedy on the GPU: equal to the golden continuation until the first
    // position where the CPU's top two logits are within kNearTie.
    SeqRunner free_run(mg, 16, 256);
    free_run.add_sequence();
    std::vector<int32_t> next = golden[p].ids;
    size_t agreed = 0;
    for (size_t i = 0; i < golden[p].greedy.size(); ++i) {
      const std::vector<float> out = free_run.step({0}, {next})[0];
      const int32_t tok = argmax_of(out.data() + out.size() - V, V);
      const float* c = lc.data() + (first + i) * V;
      std::vector<float> sorted(c, c + V);
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
      if (sorted[0] - sorted[1] < kNearTie) break;  // the golden path itself is a near-tie here
      ASSERT_EQ(tok, golden[p].greedy[i]) << "prompt " << p << " free-running token " << i;
      ++agreed;
      next = {tok};
    }
    std::printf("prompt %zu: free-running greedy agrees for %zu of %zu tokens\n", p, agreed,
                golden[p].greedy.size());
  }
  std::printf("teacher-forced argmax: %d of %d positions exact\n", exact, total);
  EXPECT_GE(exact, total * 9 / 10);  // transformers bf16 vs f32: 95%
}

}  // namespace
}  // namespace nc::testing

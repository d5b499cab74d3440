// The decoder's attention variants on the CPU backend against Hugging Face transformers
// (tools/make_golden.py, tools/golden_specs.py): Mistral (sliding window on every layer), Gemma 2
// (alternating sliding/global layers, soft caps, GeGLU, sandwich norms), Gemma 3 (q/k norms,
// five sliding layers to one global, per-kind rope), Phi-3 (fused checkpoints, head_dim 96) and
// Phi-3 with longrope, Qwen3-MoE (8 experts top-2: a dense layer then a sparse one, and every
// layer sparse, with head_dim 16 and with head_dim 64, the one the CUDA backend serves),
// DeepSeek-V2-Lite / V2 / V3 (MLA over latent pages, YaRN, interleaved rope). Every prompt
// position's logits within 1e-4 relative error whether the prompt is prefilled in one step, in
// chunks or token by token (page sizes 1, 4 and 16, so the window drops whole pages), the greedy
// continuation, and an engine run with the prefix cache hit and cascade levels forced on (logprobs
// of the first generated token within 1e-4 too).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "backend/cpu/cpu_mla.h"
#include "engine/sampling.h"
#include "engine/step_model.h"
#include "fake_model.h"
#include "golden.h"
#include "model/model_loader.h"
#include "nanocascade/engine.h"
#include "seq_runner.h"

namespace nc {
namespace {

using testing::GoldenPrompt;
using testing::SeqRunner;

const std::vector<std::string> kModels = {
    "tiny-mistral",          "tiny-gemma2",      "tiny-gemma3",           "tiny-phi3",
    "tiny-phi3-longrope",    "tiny-qwen3-moe",   "tiny-qwen3-moe-sparse", "tiny-qwen3-moe-hd64",
    "tiny-deepseek-v2-lite", "tiny-deepseek-v2", "tiny-deepseek-v3"};

std::string param_name(std::string m) {
  for (char& c : m)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return m;
}

std::string dir_of(const std::string& model) {
  return testing::fixtures_dir() + "/" + model;
}

using Mode = testing::ChunkMode;
using testing::chunks_of;

struct VariantCase {
  std::string model;
  int page_size;
  Mode mode;
};

std::string case_name(const ::testing::TestParamInfo<VariantCase>& info) {
  const char* mode[] = {"OneChunk", "Chunks", "TokenByToken"};
  return param_name(info.param.model) + "_page" + std::to_string(info.param.page_size) + "_" +
         mode[int(info.param.mode)];
}

class VariantGolden : public ::testing::TestWithParam<VariantCase> {};

// All prompts advance together, one chunk each per step, so prefills and decodes of different
// lengths share steps.
void check_logits(const VariantCase& tc) {
  const std::vector<GoldenPrompt> golden = testing::read_golden(dir_of(tc.model));
  ASSERT_FALSE(golden.empty()) << "no golden data in " << dir_of(tc.model);
  LoadedModel lm = load_model(dir_of(tc.model));
  auto backend = make_cpu_backend();
  LlamaModel model(lm.config, lm.weights, *backend);
  SeqRunner runner(model, tc.page_size, 1024);
  const int64_t V = lm.config.vocab_size;
  std::vector<std::vector<std::vector<int32_t>>> chunks;
  for (const GoldenPrompt& g : golden) chunks.push_back(chunks_of(g.ids, tc.mode));
  const std::vector<std::vector<float>> logits = runner.run_chunks(chunks);
  for (size_t p = 0; p < golden.size(); ++p) {
    ASSERT_EQ(int64_t(logits[p].size()), golden[p].rows * V);
    for (int64_t r = 0; r < golden[p].rows; ++r) {
      const double err =
          testing::rel_err(logits[p].data() + r * V, golden[p].logits.data() + r * V, size_t(V));
      ASSERT_LE(err, 1e-4) << "prompt " << p << " position " << r;
    }
  }
}

TEST_P(VariantGolden, LogitsMatchTransformers) {
  check_logits(GetParam());
}

// Every prompt prefilled, then decoded greedily for as many tokens as the golden data has, all
// prompts in the same steps.
TEST_P(VariantGolden, GreedyContinuationMatchesTransformers) {
  const VariantCase& tc = GetParam();
  const std::vector<GoldenPrompt> golden = testing::read_golden(dir_of(tc.model));
  ASSERT_FALSE(golden.empty());
  LoadedModel lm = load_model(dir_of(tc.model));
  auto backend = make_cpu_backend();
  LlamaModel model(lm.config, lm.weights, *backend);
  SeqRunner runner(model, tc.page_size, 1024);
  const int64_t V = lm.config.vocab_size;
  std::vector<int> ids;
  std::vector<std::vector<int32_t>> next, generated(golden.size());
  for (const GoldenPrompt& g : golden) {
    ids.push_back(runner.add_sequence());
    next.push_back(chunks_of(g.ids, tc.mode).front());
  }
  // Feed the rest of each prompt in the mode's chunks, then decode.
  std::vector<size_t> fed(golden.size());
  for (size_t p = 0; p < golden.size(); ++p) fed[p] = next[p].size();
  while (true) {
    std::vector<int> who;
    std::vector<std::vector<int32_t>> toks;
    std::vector<size_t> which;
    for (size_t p = 0; p < golden.size(); ++p) {
      if (generated[p].size() >= golden[p].greedy.size()) continue;
      who.push_back(ids[p]);
      toks.push_back(next[p]);
      which.push_back(p);
    }
    if (who.empty()) break;
    auto out = runner.step(who, toks);
    for (size_t i = 0; i < which.size(); ++i) {
      const size_t p = which[i];
      const std::vector<int32_t>& prompt = golden[p].ids;
      if (fed[p] < prompt.size()) {  // still prefilling
        const size_t n = std::min(prompt.size() - fed[p], next[p].size());
        next[p].assign(prompt.begin() + long(fed[p]), prompt.begin() + long(fed[p] + n));
        fed[p] += n;
        continue;
      }
      const float* last = out[i].data() + out[i].size() - size_t(V);
      generated[p].push_back(testing::argmax(last, V));
      next[p] = {generated[p].back()};
    }
  }
  for (size_t p = 0; p < golden.size(); ++p)
    EXPECT_EQ(generated[p], golden[p].greedy) << "prompt " << p;
}

std::vector<VariantCase> variant_cases() {
  std::vector<VariantCase> out;
  for (const std::string& m : kModels)
    for (int ps : {1, 4, 16})
      for (Mode mode : {Mode::OneChunk, Mode::Chunks, Mode::TokenByToken})
        out.push_back({m, ps, mode});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, VariantGolden, ::testing::ValuesIn(variant_cases()), case_name);

// The "dummy" load format (seeded random weights from the config alone) builds every family's
// tensors, Gemma's extra norms and Phi-3's fused ones included, and runs: finite logits, the same
// for the same seed.
TEST(VariantDummyWeights, EveryFamilyRuns) {
  for (const std::string& m : kModels) {
    SCOPED_TRACE(m);
    const ModelConfig cfg = load_model_config(dir_of(m));
    auto backend = make_cpu_backend();
    std::vector<std::vector<float>> runs;
    for (int rep = 0; rep < 2; ++rep) {
      LlamaModel model(cfg, RandomWeights{7}, *backend);
      SeqRunner runner(model, 4, 64);
      std::vector<int32_t> ids(20);
      for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i * 7 % cfg.vocab_size);
      runs.push_back(runner.step({runner.add_sequence()}, {ids})[0]);
    }
    ASSERT_EQ(runs[0].size(), size_t(20 * cfg.vocab_size));
    for (float x : runs[0]) ASSERT_TRUE(std::isfinite(x));
    EXPECT_EQ(runs[0], runs[1]);
  }
}

// ---- The engine: prefix cache and cascade levels forced on ----

class VariantEngine : public ::testing::TestWithParam<std::string> {};

double log_softmax_at(const float* logits, int64_t V, int32_t id) {
  const float mx = *std::max_element(logits, logits + V);
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(logits[i]) - mx);
  return double(logits[id]) - mx - std::log(sum);
}

// Wave 1 computes every golden prompt; wave 2 sends each prompt twice more (its pages found in
// the prefix cache, and two requests sharing it: a cascade level). Every output is transformers'
// greedy continuation, and the first token's log-probability (with the top 5) matches the golden
// logits within 1e-4.
void check_engine(const std::string& model_name) {
  const std::string dir = dir_of(model_name);
  const std::vector<GoldenPrompt> golden = testing::read_golden(dir);
  ASSERT_FALSE(golden.empty());
  for (int ps : {2, 4}) {
    SCOPED_TRACE(::testing::Message() << "page " << ps);
    auto model = make_llama_step_model(dir, "cpu");
    EngineConfig cfg;
    cfg.page_size = ps;
    cfg.max_num_batched_tokens = 64;
    cfg.kv_cache_memory = std::to_string(model->kv_bytes_per_page(ps) * 512);
    cfg.enable_prefix_cache = true;
    cfg.enable_cascade = true;
    cfg.cascade_force = true;
    const int64_t V = model->vocab_size();
    Engine e(cfg, std::move(model), std::make_unique<fake::FakeCodec>());
    SamplingParams sp;
    sp.temperature = 0;
    sp.max_tokens = int(golden[0].greedy.size());
    sp.ignore_eos = true;
    sp.logprobs = 5;
    std::vector<std::vector<int32_t>> wave1, wave2;
    for (const GoldenPrompt& g : golden) {
      wave1.push_back(g.ids);
      wave2.push_back(g.ids);
      wave2.push_back(g.ids);
    }
    const auto out1 = e.generate(wave1, sp);
    const auto out2 = e.generate(wave2, sp);
    for (size_t i = 0; i < out1.size() + out2.size(); ++i) {
      const auto& o = i < out1.size() ? out1[i] : out2[i - out1.size()];
      const GoldenPrompt& g = golden[i < out1.size() ? i : (i - out1.size()) / 2];
      EXPECT_EQ(o.token_ids, g.greedy) << "output " << i;
      ASSERT_FALSE(o.logprobs.empty());
      const float* row = g.logits.data() + (g.rows - 1) * V;  // the prompt's last position
      for (const auto& [id, lp] : o.logprobs[0].top) {
        const double want = log_softmax_at(row, V, id);
        EXPECT_LE(std::abs(lp - want), 1e-4 * std::max(1.0, std::abs(want)))
            << "output " << i << " token " << id;
      }
    }
    const EngineStats st = e.stats();
    EXPECT_GT(st.cache.hit_tokens, 0);
    EXPECT_GE(st.cache.max_levels, 2);
  }
}

TEST_P(VariantEngine, CachedAndCascadeRunsMatchTransformers) {
  check_engine(GetParam());
}

// MLA's expanded form (cpu_mla.h) forced for every entry, prefill and decode, plain, chunked, and
// with prefix-cache hits and cascade levels: the same logits and continuations. (Auto takes it
// only for entries of more rows than these prompts have.)
TEST(DeepseekExpandedForm, LogitsAndCachedCascadeRunsMatchTransformers) {
  set_mla_form(MlaForm::Expanded);
  for (const char* m : {"tiny-deepseek-v2-lite", "tiny-deepseek-v2", "tiny-deepseek-v3"}) {
    SCOPED_TRACE(m);
    for (Mode mode : {Mode::OneChunk, Mode::Chunks}) check_logits({m, 4, mode});
    check_engine(m);
  }
  set_mla_form(MlaForm::Auto);
}

std::string engine_case_name(const ::testing::TestParamInfo<std::string>& info) {
  return param_name(info.param);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, VariantEngine, ::testing::ValuesIn(kModels), engine_case_name);

}  // namespace
}  // namespace nc

// Seeded random weights ("dummy" load format): the generator against SplitMix64's published
// outputs, the weight scales, and a tiny model loaded from a config alone that runs
// deterministically (same seed, same logits) on the CPU backend, directly and through the
// engine.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "backend/backend.h"
#include "core/error.h"
#include "core/random_init.h"
#include "model/llama.h"
#include "model/model_loader.h"
#include "nanocascade/engine.h"

namespace nc {
namespace {

// A tiny Qwen3-style config (q/k norm, GQA 2) written where the test can load it.
std::string tiny_config_path() {
  // Per process: the suite may run as concurrent shards (tools/gtest_shards.sh).
  const auto dir = std::filesystem::temp_directory_path() /
                   ("nc_random_model_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / "tiny-qwen3.json";
  std::ofstream(path) << R"({
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "intermediate_size": 128, "vocab_size": 300, "max_position_embeddings": 256,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true
  })";
  return path.string();
}

// One prefill of `ids` over fresh pages; the logits of every position.
std::vector<float> prefill_logits(LlamaModel& m, const std::vector<int32_t>& ids) {
  const int page_size = 16, n = int(ids.size());
  KVCache kv = m.make_kv_cache(8, page_size);
  ForwardInput in;
  in.token_ids = ids;
  for (int i = 0; i < n; ++i) in.positions.push_back(i), in.logit_rows.push_back(i);
  in.attention.num_tokens = n;
  PagedKVBatch b;
  std::vector<int32_t> pages;
  for (int p = 0; p * page_size < n; ++p) pages.push_back(p);
  b.add(n, pages, n, page_size);
  in.attention.levels.push_back(b);
  return m.forward(in, kv);
}

TEST(RandomInit, SplitMix64PublishedOutputs) {
  // SplitMix64 seeded with 1234567 (Vigna's reference generator): its first outputs are the
  // finaliser applied to the state after one and two increments.
  EXPECT_EQ(mix64(1234567), 6457827717110365317ull);
  EXPECT_EQ(mix64(1234567 + 0x9E3779B97F4A7C15ull), 3203168211198807973ull);
}

TEST(RandomInit, FillUniformRangeAndMoments) {
  auto cpu = make_cpu_backend();
  Tensor t = cpu->alloc({200000}, DType::F32);
  cpu->fill_uniform(t, 42, -2.0f, 1.0f);
  const float* x = t.ptr<float>();
  double mean = 0, var = 0;
  for (int64_t i = 0; i < t.numel(); ++i) {
    ASSERT_GE(x[i], -2.0f);
    ASSERT_LT(x[i], 1.0f);
    EXPECT_EQ(x[i], -2.0f + 3.0f * uniform_hash01(42, uint64_t(i)));
    mean += x[i];
  }
  mean /= double(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= double(t.numel());
  // Uniform on [-2, 1): mean -0.5, variance 9/12.
  EXPECT_NEAR(mean, -0.5, 0.01);
  EXPECT_NEAR(var, 0.75, 0.01);
  // Another seed gives other values.
  Tensor u = cpu->alloc({16}, DType::F32);
  cpu->fill_uniform(u, 43, -2.0f, 1.0f);
  int same = 0;
  for (int i = 0; i < 16; ++i) same += u.ptr<float>()[i] == x[i];
  EXPECT_LT(same, 2);
}

TEST(RandomInit, LoadModelConfigFromJsonFile) {
  const ModelConfig c = load_model_config(tiny_config_path());
  EXPECT_EQ(c.architecture, "qwen3");
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_THROW(load_model_config("/nonexistent/config.json"), Error);
  EXPECT_THROW(parse_load_format("random"), Error);
  EXPECT_EQ(parse_load_format("dummy"), LoadFormat::Dummy);
}

TEST(RandomInit, ShippedConfigsHaveTheRealShapes) {
  const std::string dir = std::string(NC_FIXTURES_DIR) + "/../../configs";
  const ModelConfig q = load_model_config(dir + "/qwen3-0.6b.json");
  EXPECT_EQ(q.num_layers, 28);
  EXPECT_EQ(q.hidden_size, 1024);
  EXPECT_EQ(q.num_heads, 16);
  EXPECT_EQ(q.num_kv_heads, 8);
  EXPECT_EQ(q.head_dim, 128);
  EXPECT_EQ(q.intermediate_size, 3072);
  EXPECT_EQ(q.vocab_size, 151936);
  EXPECT_TRUE(q.qk_norm);
  EXPECT_TRUE(q.tie_embeddings);
  const ModelConfig l = load_model_config(dir + "/llama-3-8b.json");
  EXPECT_EQ(l.num_layers, 32);
  EXPECT_EQ(l.hidden_size, 4096);
  EXPECT_EQ(l.num_kv_heads, 8);
  EXPECT_EQ(l.head_dim, 128);
  EXPECT_EQ(l.intermediate_size, 14336);
  EXPECT_EQ(l.vocab_size, 128256);
  EXPECT_FALSE(l.tie_embeddings);
}

TEST(RandomInit, SameSeedSameLogitsFinite) {
  const ModelConfig cfg = load_model_config(tiny_config_path());
  auto cpu = make_cpu_backend();
  LlamaModel a(cfg, RandomWeights{7}, *cpu);
  LlamaModel b(cfg, RandomWeights{7}, *cpu);
  LlamaModel c(cfg, RandomWeights{8}, *cpu);
  const std::vector<int32_t> ids = {5, 17, 299, 0, 42, 42, 100, 7, 8, 9, 250, 3, 1, 2, 77, 31, 64};
  const std::vector<float> la = prefill_logits(a, ids), lb = prefill_logits(b, ids),
                           lc = prefill_logits(c, ids);
  ASSERT_EQ(la.size(), ids.size() * 300);
  EXPECT_EQ(la, lb);
  double diff = 0, sq = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    ASSERT_TRUE(std::isfinite(la[i])) << i;
    diff += std::abs(la[i] - lc[i]);
    sq += double(la[i]) * la[i];
  }
  EXPECT_GT(diff / double(la.size()), 0.05) << "another seed should give other logits";
  // The scales keep logits O(1) (tied embeddings with std 1/sqrt(hidden) against a normalised
  // hidden state): neither vanishing nor huge.
  const double rms = std::sqrt(sq / double(la.size()));
  EXPECT_GT(rms, 0.1);
  EXPECT_LT(rms, 10.0);
  EXPECT_GT(a.weight_bytes(), 300 * 64 * 4);
}

TEST(RandomInit, EngineWithDummyWeightsIsDeterministic) {
  EngineConfig cfg;
  cfg.model = tiny_config_path();
  cfg.load_format = "dummy";
  cfg.dummy_seed = 3;
  cfg.kv_cache_memory = "4MiB";
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 12;
  p.ignore_eos = true;
  std::vector<CompletionOutput> runs[2];
  for (auto& r : runs) {
    Engine e(cfg);
    r = e.generate(std::vector<std::string>{"1 2 3 4 5", "250 7"}, p);
    const EngineStats s = e.stats();
    EXPECT_GT(s.weight_bytes, 0);
    EXPECT_GT(s.workspace_bytes, 0);
    // The model's host preparation is timed per step and is part of the step's wall time.
    for (const EngineStats::StepKind& k : {s.prefill_steps, s.decode_steps}) {
      EXPECT_GT(k.model_prep_s, 0.0);
      EXPECT_LT(k.model_prep_s, k.wall_s);
    }
  }
  ASSERT_EQ(runs[0].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(runs[0][i].token_ids.size(), 12u);
    EXPECT_EQ(runs[0][i].token_ids, runs[1][i].token_ids);
    EXPECT_EQ(runs[0][i].prompt_token_ids.size(), i == 0 ? 5u : 2u);
    // The text is the ids written out.
    std::string want;
    for (int32_t t : runs[0][i].token_ids) want.append(" ").append(std::to_string(t));
    EXPECT_EQ(runs[0][i].text, want);
  }
  // No tokenizer: a prompt that is not token ids is refused with a message.
  Engine e(cfg);
  EXPECT_THROW(e.add_request("hello", p), Error);
  EXPECT_THROW(e.add_request("1 2 300", p), Error);
}

}  // namespace
}  // namespace nc

// The real decoder at Llama-3.1's context (issue #13): tests/data/tiny-llama3-128k.json is
// Llama-3.1-8B's config.json (131072 positions, llama3 rope scaling over 8192) at a CPU-sized
// shape, run with seeded dummy weights. The engine serves the model's full context, sizes the
// KV pool for it, computes a long prompt in chunks exactly as in one piece (past the original
// 8192 positions, where the scaled frequencies matter), and refuses a longer context.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/error.h"
#include "engine/memory_plan.h"
#include "model/model_loader.h"
#include "model/rope.h"
#include "nanocascade/engine.h"

namespace nc {
namespace {

constexpr int kContext = 131072;

EngineConfig tiny_128k(int budget, int max_seqs = 2) {
  EngineConfig cfg;
  cfg.model = NC_FIXTURES_DIR "/../data/tiny-llama3-128k.json";
  cfg.load_format = "dummy";
  cfg.dummy_seed = 5;
  cfg.max_num_batched_tokens = budget;
  cfg.max_num_seqs = max_seqs;
  cfg.kv_cache_memory = "512MiB";
  return cfg;
}

TEST(LongContextModel, ConfigIsLlama31sContextAndRope) {
  const ModelConfig c = load_model_config(tiny_128k(64).model);
  EXPECT_EQ(c.max_position, kContext);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.original_max_position, 8192);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  // The public 8B config has the same context and rope.
  const ModelConfig big = load_model_config(NC_FIXTURES_DIR "/../../configs/llama-3.1-8b.json");
  EXPECT_EQ(big.max_position, kContext);
  EXPECT_EQ(big.rope_scaling.type, "llama3");
  EXPECT_EQ(big.num_kv_heads, 8);
  EXPECT_EQ(big.head_dim, 128);
  // The table covers every position, and the lowest frequency is 8x slower than plain rope's
  // (wavelength beyond 8192 / low_freq_factor): at the last position its angle is 1/8 of it.
  const HostTensor t = rope_cos_sin_table(c, kContext);
  ASSERT_EQ(t.shape[0], kContext);
  const int64_t D = c.head_dim, i = D / 2 - 1;
  const double inv = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(D)) / 8.0;
  const double angle = double(kContext - 1) * inv;
  EXPECT_NEAR(t.data[(kContext - 1) * D + i], std::cos(angle), 2e-3);
  EXPECT_NEAR(t.data[(kContext - 1) * D + D / 2 + i], std::sin(angle), 2e-3);
}

TEST(LongContextModel, EngineServesTheFullContextAndSizesThePoolForIt) {
  const EngineConfig cfg = tiny_128k(2048, 2);
  const MemoryPlan plan = plan_memory_for_config(cfg, 0);
  EXPECT_EQ(plan.max_model_len, kContext);
  // 2 layers x 2 KV heads x 16 dims x (K, V) x float32 = 512 bytes a token.
  EXPECT_EQ(plan.bytes_per_token, 512);
  // 512 MiB would hold 1M tokens; the pool stops at what 2 full-context requests use.
  EXPECT_EQ(plan.pages, 2 * kContext / cfg.page_size);
  EXPECT_EQ(plan.requests_that_fit, 2);
  Engine engine(cfg);
  EXPECT_EQ(engine.stats().max_model_len, kContext);
  SamplingParams p;
  p.max_tokens = 1;
  try {
    engine.add_request(std::vector<int32_t>(kContext, 5), p);
    ADD_FAILURE() << "a prompt of the whole context was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::ContextLength) << e.what();
  }
  EngineConfig longer = cfg;
  longer.max_model_len = 2 * kContext;
  try {
    Engine e(longer);
    ADD_FAILURE() << "max_model_len past the model's positions was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("262144"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("131072"), std::string::npos) << e.what();
  }
}

// Greedy tokens of one prompt of `n` tokens, with a step budget of `budget` tokens.
std::vector<int32_t> greedy_after(int n, int budget) {
  Engine engine(tiny_128k(budget, 1));
  std::vector<int32_t> prompt(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) prompt[size_t(i)] = int32_t((i * 7919 + 13) % 512);
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 6;
  p.ignore_eos = true;
  const auto out = engine.generate(std::vector<std::vector<int32_t>>{prompt}, p);
  return out.at(0).token_ids;
}

TEST(LongContextModelSlow, ChunkedPrefillPastTheOriginalContextMatchesOnePiece) {
  // 8300 positions: past llama3's original 8192, in chunks of 1024 (and a top-up) vs one piece.
  const int n = 8300;
  const std::vector<int32_t> whole = greedy_after(n, 8400), chunked = greedy_after(n, 1024);
  ASSERT_EQ(whole.size(), 6u);
  EXPECT_EQ(chunked, whole);
}

}  // namespace
}  // namespace nc

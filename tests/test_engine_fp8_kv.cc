// The engine with an fp8 KV cache (EngineConfig::kv_cache_dtype = "fp8") on the CPU, over the
// tiny Llama fixture: a page takes a quarter of the float32 page's bytes and the stats say so;
// the golden prompts' first tokens and their log-probabilities stay close to the float32 cache's
// (not equal: e4m3 keeps 3 mantissa bits), also through the prefix cache and cascade levels;
// preemption recomputes the same codes (the same tokens as without it); with the page invariants
// checked after every step and no page left in use; configurations the backend or model cannot
// serve fail with errors naming them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "core/error.h"
#include "engine/memory_plan.h"
#include "engine/step_model.h"
#include "fake_model.h"
#include "golden.h"
#include "nanocascade/engine.h"
#include "server/metrics.h"

namespace nc {
namespace {

const std::string kModel = "tiny-llama";

std::unique_ptr<StepModel> model_with(const std::string& kv_dtype,
                                      const std::string& fixture = kModel) {
  StepModelOptions o;
  o.kv_cache_dtype = kv_dtype;
  return make_llama_step_model(testing::fixtures_dir() + "/" + fixture, o);
}

struct GoldenRun {
  std::vector<CompletionOutput> outs;
  EngineStats stats;
};

// Every golden prompt once, then each twice more (prefix hits, a forced cascade level);
// `pages` 0: room for everything, else that many pages (preemption); host_pages > 0: a host tier
// of that many pages.
GoldenRun run_golden(const std::string& kv_dtype, int pages = 0, int host_pages = 0) {
  const auto golden = testing::read_golden(testing::fixtures_dir() + "/" + kModel);
  EXPECT_FALSE(golden.empty());
  // A tight pool still holds the longest request (prompt + greedy) alone.
  size_t longest = 0;
  for (const auto& g : golden) longest = std::max(longest, g.ids.size() + g.greedy.size());
  if (pages) pages = std::max(pages, int(longest + 3) / 4);
  auto model = model_with(kv_dtype);
  EngineConfig cfg;
  cfg.page_size = 4;
  cfg.max_num_batched_tokens = 64;
  cfg.kv_cache_memory = std::to_string(model->kv_bytes_per_page(4) * (pages ? pages : 512));
  cfg.cascade_force = true;
  if (host_pages) cfg.host_kv_cache = std::to_string(model->kv_bytes_per_page(4) * host_pages);
  cfg.check_invariants = true;
  cfg.kv_cache_dtype = kv_dtype;  // the engine's own model would take it from here
  Engine e(cfg, std::move(model), std::make_unique<fake::FakeCodec>());
  SamplingParams sp;
  sp.temperature = 0;
  sp.max_tokens = int(golden[0].greedy.size());
  sp.ignore_eos = true;
  sp.logprobs = 5;
  std::vector<std::vector<int32_t>> wave1, wave2;
  for (const auto& g : golden) {
    wave1.push_back(g.ids);
    wave2.insert(wave2.end(), {g.ids, g.ids});
  }
  GoldenRun r;
  r.outs = e.generate(wave1, sp);
  const auto out2 = e.generate(wave2, sp);
  r.outs.insert(r.outs.end(), out2.begin(), out2.end());
  r.stats = e.stats();
  return r;
}

TEST(EngineFp8Kv, PagesTakeAQuarterOfTheFloatBytesAndTheStatsSayWhich) {
  auto f32 = model_with("auto"), fp8 = model_with("fp8");
  EXPECT_EQ(f32->kv_bytes_per_page(16), 4 * fp8->kv_bytes_per_page(16));
  EXPECT_EQ(f32->kv_cache_dtype(), "f32");
  EXPECT_EQ(fp8->kv_cache_dtype(), "fp8_e4m3");
  const GoldenRun r = run_golden("fp8");
  EXPECT_EQ(r.stats.kv_cache_dtype, "fp8_e4m3");
  EXPECT_EQ(r.stats.kv_bytes_per_token, fp8->kv_bytes_per_page(4) / 4);
  EXPECT_EQ(r.stats.used_pages, 0);  // nothing leaked
  EXPECT_GT(r.stats.cache.hit_tokens, 0);
  EXPECT_GE(r.stats.cache.max_levels, 2);
}

// tiny-llama's random weights give near-flat logits, so a greedy continuation flips at the first
// near tie and differs from there on: the first generated token and its log-probabilities are
// what compares one to one. The bounds are the measured values (max 0.31 nats, every first token
// the same) with a margin; the real model's loss is measured on text (bench/kv_quality.cc).
TEST(EngineFp8Kv, FirstTokensAndLogprobsStayCloseToTheFloatCache) {
  const GoldenRun f32 = run_golden("auto"), fp8 = run_golden("fp8");
  ASSERT_EQ(f32.outs.size(), fp8.outs.size());
  int same_first = 0;
  double max_diff = 0;
  for (size_t i = 0; i < f32.outs.size(); ++i) {
    const auto &a = f32.outs[i], &b = fp8.outs[i];
    ASSERT_FALSE(a.token_ids.empty());
    ASSERT_FALSE(b.token_ids.empty());
    same_first += a.token_ids[0] == b.token_ids[0];
    std::map<int32_t, float> want;
    for (const auto& [id, lp] : a.logprobs[0].top) want[id] = lp;
    for (const auto& [id, lp] : b.logprobs[0].top)
      if (want.count(id)) max_diff = std::max(max_diff, double(std::fabs(lp - want[id])));
  }
  EXPECT_GT(max_diff, 0.0) << "fp8 gave the float cache's values exactly: was it used?";
  EXPECT_LT(max_diff, 0.5);
  EXPECT_GE(same_first, int(f32.outs.size()) - 1) << same_first << " of " << f32.outs.size();
  std::printf(
      "tiny-llama fp8 vs f32 KV: first tokens %d of %zu the same, top-5 logprob diff %.3f\n",
      same_first, f32.outs.size(), max_diff);
}

TEST(EngineFp8Kv, PreemptionRecomputesTheSameCodes) {
  const GoldenRun roomy = run_golden("fp8"), tight = run_golden("fp8", 16);
  EXPECT_GT(tight.stats.num_preemptions, 0);
  EXPECT_EQ(tight.stats.used_pages, 0);
  ASSERT_EQ(roomy.outs.size(), tight.outs.size());
  for (size_t i = 0; i < roomy.outs.size(); ++i)
    EXPECT_EQ(roomy.outs[i].token_ids, tight.outs[i].token_ids) << "output " << i;
}

// The host tier copies fp8 pages as bytes (a quarter of the float32 page): pages offloaded and
// reloaded give the tokens of a run that kept everything on the device.
TEST(EngineFp8Kv, HostTierMovesFp8PagesIntact) {
  const GoldenRun roomy = run_golden("fp8"), tiered = run_golden("fp8", 16, 64);
  EXPECT_GT(tiered.stats.host.offloaded_pages, 0);
  EXPECT_GT(tiered.stats.host.reloaded_pages, 0);
  EXPECT_EQ(tiered.stats.used_pages, 0);
  ASSERT_EQ(roomy.outs.size(), tiered.outs.size());
  for (size_t i = 0; i < roomy.outs.size(); ++i)
    EXPECT_EQ(roomy.outs[i].token_ids, tiered.outs[i].token_ids) << "output " << i;
}

TEST(EngineFp8Kv, MemoryPlanAndMetricsNameTheDtype) {
  EngineConfig cfg;
  cfg.model = testing::fixtures_dir() + "/" + kModel;
  cfg.kv_cache_memory = "1MiB";
  cfg.kv_cache_dtype = "fp8";
  const MemoryPlan fp8 = plan_memory_for_config(cfg, 64);
  cfg.kv_cache_dtype = "auto";
  const MemoryPlan f32 = plan_memory_for_config(cfg, 64);
  EXPECT_EQ(fp8.kv_dtype, "fp8_e4m3");
  EXPECT_EQ(f32.kv_dtype, "f32");
  // tiny-llama: 2 layers x K and V x 2 heads x 16 values, a byte or four each.
  EXPECT_EQ(fp8.bytes_per_token, 2 * 2 * 2 * 16);
  EXPECT_EQ(f32.bytes_per_token, 4 * fp8.bytes_per_token);
  EXPECT_EQ(fp8.pages, 4 * f32.pages);  // the same bytes hold four times the pages
  EngineStats st;
  st.kv_cache_dtype = "fp8_e4m3";
  st.kv_bytes_per_token = 128;
  std::string text;
  server::render_engine_metrics(st, text);
  EXPECT_NE(text.find("nanocascade_kv_cache_info{dtype=\"fp8_e4m3\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("nanocascade_kv_cache_bytes_per_token 128\n"), std::string::npos) << text;
}

TEST(EngineFp8Kv, UnservableDtypesFailNamingThem) {
  try {
    model_with("bf16");
    ADD_FAILURE() << "bf16 pages on the CPU backend";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("bf16"), std::string::npos) << e.what();
  }
  try {
    model_with("fp9");
    ADD_FAILURE() << "fp9";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("fp9"), std::string::npos) << e.what();
  }
  try {
    model_with("fp8", "tiny-deepseek-v2");
    ADD_FAILURE() << "fp8 on an MLA model";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("MLA"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nc

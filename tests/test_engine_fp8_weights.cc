// Where FP8 weights show (issue #17 item 3): the memory plan (`nanocascade memory`), the engine's
// stats (bench --json) and /metrics name the linear layers' weight dtype and count their bytes,
// over the tiny Llama fixture on the CPU backend (float32 as stored, or e4m3 under
// --quantization fp8).
#include <gtest/gtest.h>

#include <string>

#include "engine/memory_plan.h"
#include "engine/step_model.h"
#include "fake_model.h"
#include "golden.h"
#include "nanocascade/engine.h"
#include "server/metrics.h"

namespace nc {
namespace {

EngineConfig tiny_llama(const std::string& quantization) {
  EngineConfig cfg;
  cfg.model = testing::fixtures_dir() + "/tiny-llama";
  cfg.kv_cache_memory = "1MiB";
  cfg.quantization = quantization;
  return cfg;
}

TEST(EngineFp8Weights, MemoryPlanNamesTheDtypeAndCountsOneByteAWeight) {
  const MemoryPlan fp8 = plan_memory_for_config(tiny_llama("fp8"), 64);
  const MemoryPlan f32 = plan_memory_for_config(tiny_llama("auto"), 64);
  EXPECT_EQ(fp8.weight_dtype, "fp8_e4m3");
  EXPECT_EQ(f32.weight_dtype, "f32");
  // tiny-llama's linear layers: 2 layers x (q 64x64, k/v 32x64 each, o 64x64, gate/up 128x64
  // each, down 64x128) = 2 x 36864 values, 4 bytes each as stored, 1 (+ row scales) in fp8;
  // fused: 4 tensors and 512 rows a layer, each row a float scale, each tensor an input scale.
  const int64_t linear_values = 2 * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 2 * 128 * 64 + 64 * 128);
  const int64_t saved = f32.weight_bytes - fp8.weight_bytes;
  EXPECT_LE(saved, 3 * linear_values);
  EXPECT_GE(saved, 3 * linear_values - 4 * 2 * (128 + 64 + 256 + 64) - 4 * 2 * 4 * 20);
}

TEST(EngineFp8Weights, StatsAndMetricsSayTheDtype) {
  StepModelOptions o;
  o.quantization = "fp8";
  const EngineConfig cfg = tiny_llama("fp8");
  Engine e(cfg, make_llama_step_model(cfg.model, o), std::make_unique<fake::FakeCodec>());
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 2;
  p.ignore_eos = true;
  e.generate(std::vector<std::vector<int32_t>>{{1, 2, 3, 4}}, p);
  const EngineStats st = e.stats();
  EXPECT_EQ(st.weight_dtype, "fp8_e4m3");
  EXPECT_GT(st.weight_bytes, 0);
  std::string text;
  server::render_engine_metrics(st, text);
  EXPECT_NE(text.find("nanocascade_weights_info{dtype=\"fp8_e4m3\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("nanocascade_weight_bytes " + std::to_string(st.weight_bytes) + "\n"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace nc

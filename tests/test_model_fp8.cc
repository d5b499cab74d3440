// FP8 weights end to end on the CPU backend: tiny-llama stored as a Hugging Face FP8 checkpoint
// (tools/make_fp8_fixture.py: per-channel and per-tensor weight scales, static input scales)
// against a float32 reference of the same FP8 arithmetic computed with PyTorch/transformers;
// quantisation at load against torch's float8_e4m3fn cast; the config's refusals; the bytes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "backend/fp8_weight.h"
#include "core/error.h"
#include "golden.h"
#include "model/fp8_load.h"
#include "model/model_loader.h"
#include "seq_runner.h"

namespace nc {
namespace {

using testing::GoldenPrompt;
using testing::SeqRunner;

std::string fixture(const char* name) {
  return testing::fixtures_dir() + "/" + name;
}

class Fp8Checkpoint : public ::testing::TestWithParam<testing::ChunkMode> {};

// Logits within 1e-4 (relative, per position, testing::rel_err) of the reference: the same e4m3
// values multiplied in float32 in another order; greedy tokens equal.
TEST_P(Fp8Checkpoint, MatchesTheFloat32ReferenceOfItsFp8Values) {
  const std::string dir = fixture("tiny-llama-fp8");
  const std::vector<GoldenPrompt> golden = testing::read_golden(dir);
  ASSERT_EQ(golden.size(), 3u);
  LoadedModel lm = load_model(dir);
  EXPECT_EQ(lm.config.quantization, "fp8");
  auto backend = make_cpu_backend();
  LlamaModel model(lm.config, lm.weights, *backend);
  SeqRunner runner(model, 16, 256);
  const int64_t V = lm.config.vocab_size;
  std::vector<std::vector<std::vector<int32_t>>> chunks;
  for (const GoldenPrompt& g : golden) chunks.push_back(testing::chunks_of(g.ids, GetParam()));
  const auto logits = runner.run_chunks(chunks);
  for (size_t p = 0; p < golden.size(); ++p) {
    ASSERT_EQ(int64_t(logits[p].size()), golden[p].rows * V);
    for (int64_t r = 0; r < golden[p].rows; ++r)
      EXPECT_LE(testing::rel_err(logits[p].data() + r * V, golden[p].logits.data() + r * V, V),
                1e-4)
          << "prompt " << p << " position " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, Fp8Checkpoint,
                         ::testing::Values(testing::ChunkMode::OneChunk,
                                           testing::ChunkMode::TokenByToken));

TEST(Fp8Checkpoint, GreedyMatchesTheReference) {
  const std::string dir = fixture("tiny-llama-fp8");
  const std::vector<GoldenPrompt> golden = testing::read_golden(dir);
  LoadedModel lm = load_model(dir);
  auto backend = make_cpu_backend();
  LlamaModel model(lm.config, lm.weights, *backend);
  SeqRunner runner(model, 16, 256);
  const int64_t V = lm.config.vocab_size;
  for (size_t p = 0; p < golden.size(); ++p) {
    const int id = runner.add_sequence();
    std::vector<int32_t> next = golden[p].ids, got;
    for (size_t i = 0; i < golden[p].greedy.size(); ++i) {
      const auto out = runner.step({id}, {next});
      got.push_back(testing::argmax(out[0].data() + out[0].size() - V, V));
      next = {got.back()};
    }
    EXPECT_EQ(got, golden[p].greedy) << "prompt " << p;
  }
}

// Layer 0 of the fixture is tiny-llama's float weights quantised per channel by torch
// (float8_e4m3fn cast of w / (amax / 448)): our quantiser gives the same codes and scales.
TEST(Fp8Quantize, SameCodesAsTorch) {
  const LoadedModel fp = load_model(fixture("tiny-llama"));
  const LoadedModel q8 = load_model(fixture("tiny-llama-fp8"));
  for (const char* part : {"self_attn.q_proj", "self_attn.o_proj", "mlp.down_proj"}) {
    const std::string name = std::string("model.layers.0.") + part + ".weight";
    const HostTensor& w = fp.weights.at(name);
    const Fp8Weight ours = quantize_fp8_weight(w);
    const Fp8Weight theirs = fp8_weight_from(q8.weights, name, w.shape);
    EXPECT_EQ(ours.codes, theirs.codes) << name;
    EXPECT_EQ(ours.scales, theirs.scales) << name;
  }
}

// quantization "fp8" on a float checkpoint: linear weights one byte a value plus a float per row;
// "none" on the FP8 checkpoint: dequantised to float32, the same bytes as the float checkpoint.
TEST(Fp8Quantize, WeightBytes) {
  LoadedModel lm = load_model(fixture("tiny-llama"));
  auto backend = make_cpu_backend();
  const LlamaModel f32(lm.config, lm.weights, *backend);
  lm.config.quantization = "fp8";
  const LlamaModel fp8(lm.config, lm.weights, *backend);
  int64_t linear_values = 0, linear_rows = 0;
  for (const auto& [name, t] : lm.weights)
    if (is_fp8_linear_name(name)) linear_values += t.numel(), linear_rows += t.shape[0];
  const int64_t fused = 2 * 2;  // per layer: q/k/v and gate/up become one tensor each
  // Each fused or plain tensor adds its padding (< 16 bytes) and one input-scale float.
  const int64_t saved = f32.weight_bytes() - fp8.weight_bytes();
  EXPECT_GE(saved, linear_values * 3 - linear_rows * 4 - (14 - fused) * 20);
  EXPECT_LE(saved, linear_values * 3 - linear_rows * 4);
  LoadedModel stored = load_model(fixture("tiny-llama-fp8"));
  stored.config.quantization = "none";
  const LlamaModel deq(stored.config, stored.weights, *backend);
  EXPECT_EQ(deq.weight_bytes(), f32.weight_bytes());
}

// An FP8-stored tensor outside the FP8 linears (here the LM head) is read as its dequantised
// values, never as raw codes without their scales: the same logits as the model whose head holds
// those values in float32; without its scale tensor it is refused by name.
TEST(Fp8Checkpoint, AnFp8TensorOutsideTheLinearsIsDequantisedWithItsScales) {
  LoadedModel lm = load_model(fixture("tiny-llama"));
  ASSERT_TRUE(lm.weights.count("lm_head.weight"));
  const Fp8Weight head = quantize_fp8_weight(lm.weights.at("lm_head.weight"));
  WeightMap fp8 = lm.weights;
  fp8["lm_head.weight"] = HostTensor{{head.rows, head.cols}, {}, DType::F8E4M3, head.codes};
  fp8["lm_head.weight_scale"] = HostTensor{{head.rows}, head.scales};
  WeightMap plain = lm.weights;
  plain["lm_head.weight"] = dequantize_fp8_weight(head);
  auto backend = make_cpu_backend();
  LlamaModel a(lm.config, fp8, *backend), b(lm.config, plain, *backend);
  SeqRunner ra(a, 16, 64), rb(b, 16, 64);
  const std::vector<int32_t> ids = {1, 17, 42, 99, 3};
  const auto la = ra.step({ra.add_sequence()}, {ids}), lb = rb.step({rb.add_sequence()}, {ids});
  EXPECT_EQ(la[0], lb[0]);
  fp8.erase("lm_head.weight_scale");
  try {
    LlamaModel c(lm.config, fp8, *backend);
    FAIL() << "an FP8 head without its scales was loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lm_head.weight_scale"), std::string::npos) << e.what();
  }
}

TEST(Fp8Config, BlockScalesAndOtherMethodsAreRefused) {
  nlohmann::json j = testing::fixture_config("tiny-llama-fp8");
  EXPECT_EQ(config_from_hf_json(j).quantization, "fp8");
  j["quantization_config"]["weight_block_size"] = {128, 128};
  try {
    config_from_hf_json(j);
    FAIL() << "block-wise fp8 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("weight_block_size [128,128]"), std::string::npos)
        << e.what();
  }
  j["quantization_config"] = {{"quant_method", "gptq"}};
  EXPECT_THROW(config_from_hf_json(j), Error);
  ModelConfig c = config_from_hf_json(testing::fixture_config("tiny-llama"));
  c.quantization = "int4";
  EXPECT_THROW(c.validate(), Error);
}

}  // namespace
}  // namespace nc

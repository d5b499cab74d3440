// The attention-variant fixtures as llama.cpp's converter writes them (model.gguf beside each,
// tools/make_gguf_goldens.py, docs/golden.md "GGUF copies"): metadata keys, tensor names per
// architecture, Gemma's 1 + w norms (not added twice), Llama-architecture q/k permutation,
// Phi-3's fused tensors and longrope factor tensors, DeepSeek's MLA tensors (kv_b split into
// k_b / v_b) and deepseek2 keys, Qwen3-MoE's stacked expert tensors and qwen3moe keys (those two
// converters run with a SentencePiece filler vocabulary).
//   - As llama.cpp reads them (no window for Mistral, head_dim^-1/2 for Gemma): logits of every
//     prompt position within 1e-4 of gguf_golden.json (Phi-3: golden.json), and the greedy
//     continuation.
//   - With what the GGUF does not say set from config.json: the transformers goldens of the
//     safetensors checkpoint (golden.json), so everything else matches the checkpoint exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "golden.h"
#include "model/model_loader.h"
#include "seq_runner.h"

namespace nc {
namespace {

using testing::GoldenPrompt;
using testing::SeqRunner;

const std::vector<std::string> kFixtures = {
    "tiny-mistral",     "tiny-gemma2",        "tiny-gemma3",
    "tiny-phi3",        "tiny-phi3-longrope", "tiny-deepseek-v2-lite",
    "tiny-deepseek-v2", "tiny-deepseek-v3",   "tiny-qwen3-moe-sparse"};

std::string dir_of(const std::string& m) {
  return testing::fixtures_dir() + "/" + m;
}

// read_golden for gguf_golden.json (the same format under another name), else golden.json.
std::vector<GoldenPrompt> gguf_goldens(const std::string& dir) {
  if (!std::filesystem::exists(dir + "/gguf_golden.json")) return testing::read_golden(dir);
  const std::string tmp =
      ::testing::TempDir() + "/gguf_golden_" + std::filesystem::path(dir).filename().string();
  std::filesystem::create_directories(tmp);
  std::filesystem::copy_file(dir + "/gguf_golden.json", tmp + "/golden.json",
                             std::filesystem::copy_options::overwrite_existing);
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().filename().string().starts_with("gguf_logits_"))
      std::filesystem::copy_file(e.path(), tmp + "/" + e.path().filename().string(),
                                 std::filesystem::copy_options::overwrite_existing);
  return testing::read_golden(tmp);
}

// Prefills every prompt in one step (page size 4), then decodes greedily; logits of every
// prompt position within 1e-4 and the continuation as the goldens say.
void expect_matches(const ModelConfig& cfg, const WeightMap& w,
                    const std::vector<GoldenPrompt>& golden) {
  auto backend = make_cpu_backend();
  LlamaModel model(cfg, w, *backend);
  SeqRunner runner(model, 4, 512);
  const int64_t V = cfg.vocab_size;
  for (size_t p = 0; p < golden.size(); ++p) {
    const GoldenPrompt& g = golden[p];
    const int id = runner.add_sequence();
    auto out = runner.step({id}, {g.ids});
    ASSERT_EQ(int64_t(out[0].size()), g.rows * V);
    for (int64_t r = 0; r < g.rows; ++r)
      ASSERT_LE(testing::rel_err(out[0].data() + r * V, g.logits.data() + r * V, size_t(V)), 1e-4)
          << "prompt " << p << " position " << r;
    std::vector<int32_t> gen;
    while (gen.size() < g.greedy.size()) {
      gen.push_back(testing::argmax(out[0].data() + out[0].size() - size_t(V), V));
      out = runner.step({id}, {{gen.back()}});
    }
    EXPECT_EQ(gen, g.greedy) << "prompt " << p;
  }
}

class ConverterGguf : public ::testing::TestWithParam<std::string> {};

TEST_P(ConverterGguf, AsLlamaCppReadsItMatchesTheGgufGoldens) {
  const std::string dir = dir_of(GetParam());
  LoadedModel lm = load_model(dir + "/model.gguf");
  const std::vector<GoldenPrompt> golden = gguf_goldens(dir);
  ASSERT_FALSE(golden.empty());
  expect_matches(lm.config, lm.weights, golden);
}

TEST_P(ConverterGguf, WithConfigJsonsExtrasMatchesTheCheckpointGoldens) {
  const std::string dir = dir_of(GetParam());
  LoadedModel lm = load_model(dir + "/model.gguf");
  const ModelConfig hf = load_model_config(dir);
  ModelConfig& c = lm.config;
  EXPECT_EQ(c.layer_sliding, hf.layer_sliding);
  EXPECT_EQ(c.activation, hf.activation);
  EXPECT_EQ(c.sandwich_norms, hf.sandwich_norms);
  EXPECT_EQ(c.scale_embeddings, hf.scale_embeddings);
  EXPECT_EQ(c.qk_norm, hf.qk_norm);
  EXPECT_EQ(c.tie_embeddings, hf.tie_embeddings);
  EXPECT_FALSE(c.norm_weight_offset);  // the file holds 1 + w already
  EXPECT_DOUBLE_EQ(c.attn_soft_cap, hf.attn_soft_cap);
  EXPECT_DOUBLE_EQ(c.final_soft_cap, hf.final_soft_cap);
  EXPECT_DOUBLE_EQ(c.sliding_rope_theta, hf.sliding_rope_theta);
  EXPECT_EQ(c.rope_scaling.type, hf.rope_scaling.type);
  EXPECT_NEAR(c.rope_theta, hf.rope_theta, 1e-6 * hf.rope_theta);
  if (c.architecture == "llama") {
    EXPECT_EQ(c.sliding_window, 0);  // the converter writes no window for Mistral
  } else {
    EXPECT_EQ(c.sliding_window, hf.sliding_window);
  }
  if (c.architecture.starts_with("gemma")) {
    EXPECT_DOUBLE_EQ(c.attn_scale, 1.0 / std::sqrt(double(c.head_dim)));  // llama.cpp's rule
  }
  if (c.mla.enabled()) {  // DeepSeek: MLA shapes and the YaRN scale from the deepseek2 keys
    EXPECT_EQ(c.mla.kv_lora_rank, hf.mla.kv_lora_rank);
    EXPECT_EQ(c.mla.q_lora_rank, hf.mla.q_lora_rank);
    EXPECT_EQ(c.mla.qk_nope_head_dim, hf.mla.qk_nope_head_dim);
    EXPECT_EQ(c.mla.v_head_dim, hf.mla.v_head_dim);
    EXPECT_EQ(c.head_dim, hf.head_dim);
    EXPECT_NEAR(c.attn_scale, hf.attn_scale, 1e-6 * hf.attn_scale);  // a float32 key
    c.rope_scaling.mscale = hf.rope_scaling.mscale;  // not in the file (gguf_golden.json: V3)
  }
  c.sliding_window = hf.sliding_window;
  c.attn_scale = hf.attn_scale;
  expect_matches(c, lm.weights, testing::read_golden(dir));
}

std::string fixture_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string m = info.param;
  for (char& ch : m)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return m;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ConverterGguf, ::testing::ValuesIn(kFixtures), fixture_name);

}  // namespace
}  // namespace nc

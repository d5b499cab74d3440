// load_model tests (config.json's parsing: test_model_config_hf.cc). References: checkpoints
// written by transformers' save_pretrained, and transformers' own GGUF loading of SmolLM2
// (tools/make_loader_fixtures.py).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numbers>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "loader_test_util.h"
#include "model/model_loader.h"

namespace nc {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using namespace loader_test;  // NOLINT

const std::string kGguf =
    std::string(NC_FIXTURES_DIR) + "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf";

// ---- GGUF names and q/k permutation ----

TEST(ModelLoaderGgufNames, MapsToHuggingFace) {
  const std::pair<const char*, const char*> cases[] = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
      {"blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"},
      {"blk.12.attn_k.weight", "model.layers.12.self_attn.k_proj.weight"},
      {"blk.3.attn_v.bias", "model.layers.3.self_attn.v_proj.bias"},
      {"blk.3.attn_q.bias", "model.layers.3.self_attn.q_proj.bias"},
      {"blk.3.attn_output.weight", "model.layers.3.self_attn.o_proj.weight"},
      {"blk.3.attn_q_norm.weight", "model.layers.3.self_attn.q_norm.weight"},
      {"blk.3.attn_k_norm.weight", "model.layers.3.self_attn.k_norm.weight"},
      {"blk.3.attn_norm.weight", "model.layers.3.input_layernorm.weight"},
      {"blk.3.ffn_norm.weight", "model.layers.3.post_attention_layernorm.weight"},
      {"blk.3.ffn_gate.weight", "model.layers.3.mlp.gate_proj.weight"},
      {"blk.3.ffn_up.weight", "model.layers.3.mlp.up_proj.weight"},
      {"blk.29.ffn_down.weight", "model.layers.29.mlp.down_proj.weight"},
      {"rope_freqs.weight", ""},
      {"blk.x.attn_q.weight", ""},
      {"blk..attn_q.weight", ""},
      {"blk.1.attn_q", ""},
      {"blk.1.attn_qq.weight", ""},
      {"blk.1.attn_q.scale", ""},
      {"blk.99999999999999999999.attn_q.weight", ""},
  };
  for (const auto& [g, h] : cases) EXPECT_EQ(gguf_to_hf_name(g), h) << g;
}

// llama.cpp's permute(w, n_head) is w.reshape(n_head, 2, hd/2, ...).swapaxes(1, 2).reshape(...):
// for one head of 4 rows, HF rows [r0 r1 r2 r3] are stored as [r0 r2 r1 r3]; of 6 rows,
// [r0 r3 r1 r4 r2 r5].
TEST(ModelLoaderGgufNames, UnpermuteInvertsLlamaCppPermute) {
  HostTensor t{{4, 2}, {0, 0.5, 2, 2.5, 1, 1.5, 3, 3.5}};  // row r holds r, r + 0.5
  unpermute_gguf_qk(t, 1, "t");
  EXPECT_EQ(t.data, (std::vector<float>{0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5}));

  HostTensor b{{12}, {0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11}};  // a bias, two heads of 6
  unpermute_gguf_qk(b, 2, "b");
  EXPECT_EQ(b.data, (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));

  HostTensor bad{{6, 1}, std::vector<float>(6)};
  expect_error([&] { unpermute_gguf_qk(bad, 2, "blk.0.attn_k.weight"); }, {"blk.0.attn_k.weight"});
}

// ---- GGUF model (SmolLM2 Q4_1) against transformers ----

class ModelLoaderGguf : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kGguf)) GTEST_SKIP() << kGguf << " is absent";
  }
};

TEST_F(ModelLoaderGguf, ConfigMatchesTransformers) {
  const GgufFile f = GgufFile::open(kGguf);
  const ModelConfig c = config_from_gguf(f);
  const json want = read_json(kDir + "gguf_smollm2_expected.json")["config"];
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.rope_theta, 100000.0);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.num_layers, want["num_hidden_layers"]);
  EXPECT_EQ(c.hidden_size, want["hidden_size"]);
  EXPECT_EQ(c.num_heads, want["num_attention_heads"]);
  EXPECT_EQ(c.num_kv_heads, want["num_key_value_heads"]);
  EXPECT_EQ(c.head_dim, want["head_dim"]);
  EXPECT_EQ(c.intermediate_size, want["intermediate_size"]);
  EXPECT_EQ(c.vocab_size, want["vocab_size"]);
  EXPECT_EQ(c.max_position, want["max_position_embeddings"]);
  EXPECT_EQ(c.rope_theta, want["rope_theta"].get<double>());
  EXPECT_FLOAT_EQ(float(c.rms_eps), want["rms_norm_eps"].get<float>());
  EXPECT_EQ(c.tie_embeddings, want["tie_word_embeddings"].get<bool>());
  EXPECT_EQ(c.rope_scaling.type, "none");
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
}

// Compares the rows the fixture holds (first 64 columns) with a tensor.
void expect_rows_match(const SafetensorsFile& ref, const std::string& name, const HostTensor& t) {
  SCOPED_TRACE(name);
  const HostTensor rows = ref.load_f32(name + ".rows");
  if (rows.shape.size() == 1) {
    ASSERT_EQ(t.data.size(), rows.data.size());
    for (size_t i = 0; i < t.data.size(); ++i) EXPECT_NEAR(t.data[i], rows.data[i], 1e-6) << i;
    return;
  }
  const HostTensor ids = ref.load_f32(name + ".row_ids");
  ASSERT_EQ(t.shape.size(), 2u);
  const int64_t cols = t.shape[1];
  const int64_t ncmp = rows.shape[1];
  for (int64_t k = 0; k < rows.shape[0]; ++k) {
    const int64_t r = int64_t(ids.data[size_t(k)]);
    for (int64_t c = 0; c < ncmp; ++c) {
      ASSERT_NEAR(t.data[size_t(r * cols + c)], rows.data[size_t(k * ncmp + c)], 1e-6)
          << "row " << r << " col " << c;
    }
  }
}

TEST_F(ModelLoaderGguf, UnpermutedQkMatchTransformers) {
  const GgufFile f = GgufFile::open(kGguf);
  const ModelConfig c = config_from_gguf(f);
  const SafetensorsFile ref = SafetensorsFile::open(kDir + "gguf_smollm2_rows.safetensors");
  const std::pair<const char*, int64_t> qk[] = {{"attn_q", c.num_heads},
                                                {"attn_k", c.num_kv_heads}};
  for (const auto& [part, heads] : qk) {
    const std::string gname = std::string("blk.0.") + part + ".weight";
    HostTensor t = f.load_f32(*f.find_tensor(gname));
    const HostTensor raw = t;
    unpermute_gguf_qk(t, heads, gname);
    expect_rows_match(ref, gguf_to_hf_name(gname), t);
    // The check has teeth: the file's own row order differs from transformers'.
    const HostTensor rows = ref.load_f32(gguf_to_hf_name(gname) + ".rows");
    EXPECT_NE(raw.data[size_t(raw.shape[1])], rows.data[size_t(rows.shape[1])]);
  }
}

TEST(ModelLoaderGgufSlow, LoadModelMatchesTransformers) {
  if (!fs::exists(kGguf)) GTEST_SKIP() << kGguf << " is absent";
  const LoadedModel m = load_model(kGguf);
  const json want = read_json(kDir + "gguf_smollm2_expected.json")["tensors"];
  const SafetensorsFile ref = SafetensorsFile::open(kDir + "gguf_smollm2_rows.safetensors");
  EXPECT_EQ(m.weights.count("lm_head.weight"), 0u);  // tied: the embedding serves
  EXPECT_EQ(m.weights.size(), expected_weights(m.config).size());
  for (const auto& [name, s] : want.items()) {
    SCOPED_TRACE(name);
    auto it = m.weights.find(name);
    ASSERT_NE(it, m.weights.end());
    const HostTensor t = dequantized(it->second);  // matrices are kept raw (Q4_1, Q8_0)
    EXPECT_EQ(t.shape, s["shape"].get<std::vector<int64_t>>());
    double sum = 0, wsum = 0, asum = 0;
    for (size_t i = 0; i < t.data.size(); ++i) {
      sum += t.data[i];
      wsum += double(i) * t.data[i];
      asum += std::abs(double(i) * t.data[i]);
    }
    EXPECT_NEAR(sum, s["sum"].get<double>(), 1e-6 * asum / double(t.data.size()) + 1e-6);
    EXPECT_NEAR(wsum, s["weighted_sum"].get<double>(), 1e-6 * asum);
    expect_rows_match(ref, name, t);
  }
}

// A GGUF written by gguf-py from tiny-llama's weights with llama.cpp's q/k permutation (4 heads,
// 2 kv heads), which transformers reads back to the originals: our loader must too.
TEST(ModelLoaderGgufTiny, SameWeightsAsTheSafetensorsFolder) {
  const LoadedModel g = load_model(kDir + "tiny-llama.gguf");
  const LoadedModel h = load_model(kDir + "tiny-llama");
  EXPECT_EQ(g.config.architecture, "llama");
  EXPECT_EQ(g.config.num_layers, h.config.num_layers);
  EXPECT_EQ(g.config.hidden_size, h.config.hidden_size);
  EXPECT_EQ(g.config.num_heads, h.config.num_heads);
  EXPECT_EQ(g.config.num_kv_heads, h.config.num_kv_heads);
  EXPECT_EQ(g.config.head_dim, h.config.head_dim);
  EXPECT_EQ(g.config.intermediate_size, h.config.intermediate_size);
  EXPECT_EQ(g.config.vocab_size, h.config.vocab_size);
  EXPECT_EQ(g.config.max_position, h.config.max_position);
  EXPECT_EQ(g.config.rope_theta, h.config.rope_theta);
  EXPECT_FLOAT_EQ(float(g.config.rms_eps), float(h.config.rms_eps));
  EXPECT_FALSE(g.config.tie_embeddings);
  ASSERT_EQ(g.weights.size(), h.weights.size());
  for (const auto& [name, t] : h.weights) {
    SCOPED_TRACE(name);
    auto it = g.weights.find(name);
    ASSERT_NE(it, g.weights.end());
    EXPECT_EQ(it->second.shape, t.shape);
    EXPECT_EQ(dequantized(it->second).data, t.data);
  }
}

// Llama-3 rope scaling as llama.cpp stores it (rope_freqs.weight): the recovered parameters must
// give transformers' inv_freq for the original config.
TEST(ModelLoaderGgufTiny, Llama3RopeScalingFromRopeFreqs) {
  const ModelConfig c = config_from_gguf(GgufFile::open(kDir + "llama3-rope.gguf"));
  const json want = read_json(kDir + "llama3_rope_expected.json");
  const RopeScaling& rs = c.rope_scaling;
  ASSERT_EQ(rs.type, "llama3");
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.vocab_size, 8);  // from llama.vocab_size: this file has no embedding
  EXPECT_FLOAT_EQ(float(rs.factor), 8.0f);
  EXPECT_NEAR(rs.low_freq_factor, 1.0, 1e-3);
  EXPECT_NEAR(rs.high_freq_factor, 4.0, 1e-3);
  EXPECT_EQ(rs.original_max_position, 8192);
  // transformers' llama3 formula applied to what we recovered.
  const auto inv_freq = want["inv_freq"].get<std::vector<double>>();
  const int64_t d = c.head_dim;
  ASSERT_EQ(int64_t(inv_freq.size()) * 2, d);
  const double L = double(rs.original_max_position);
  const double low_wl = L / rs.low_freq_factor, high_wl = L / rs.high_freq_factor;
  for (int64_t i = 0; i < d / 2; ++i) {
    const double f = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(d));
    const double wl = 2 * std::numbers::pi / f;
    double got = f;
    if (wl > low_wl) {
      got = f / rs.factor;
    } else if (wl >= high_wl) {
      const double s = (L / wl - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
      got = (1 - s) * f / rs.factor + s * f;
    }
    EXPECT_NEAR(got, inv_freq[size_t(i)], 1e-5 * inv_freq[size_t(i)]) << "frequency " << i;
  }
}

// ---- Hugging Face folders ----

void expect_weights_match(const WeightMap& w, const json& want) {
  ASSERT_EQ(w.size(), want.size());
  for (const auto& [name, s] : want.items()) {
    SCOPED_TRACE(name);
    auto it = w.find(name);
    ASSERT_NE(it, w.end());
    EXPECT_EQ(it->second.shape, s["shape"].get<std::vector<int64_t>>());
    double wsum = 0;
    for (size_t i = 0; i < it->second.data.size(); ++i) wsum += double(i) * it->second.data[i];
    EXPECT_NEAR(wsum, s["weighted_sum"].get<double>(), 1e-9 * (1 + std::abs(wsum)));
    const auto first = s["first"].get<std::vector<double>>();
    for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(double(it->second.data[i]), first[i]);
  }
}

TEST(ModelLoaderHf, TinyCheckpointsLoadAndMatchTransformers) {
  const json want = read_json(kDir + "tiny_expected.json");
  for (const char* name : {"tiny-llama", "tiny-qwen2", "tiny-qwen3"}) {
    SCOPED_TRACE(name);
    const LoadedModel m = load_model(kDir + name);
    EXPECT_NO_THROW(check_weights(m.config, m.weights));
    expect_weights_match(m.weights, want[name]);
    EXPECT_EQ(m.config.num_layers, 2);
    EXPECT_EQ(m.config.hidden_size, 16);
    EXPECT_EQ(m.config.vocab_size, 40);
  }
  const LoadedModel llama = load_model(kDir + "tiny-llama");
  EXPECT_EQ(llama.config.rope_theta, 50000.0);  // from transformers-5 "rope_parameters"
  EXPECT_EQ(llama.config.head_dim, 4);
  const LoadedModel qwen2 = load_model(kDir + "tiny-qwen2");
  EXPECT_TRUE(qwen2.config.attention_bias);
  EXPECT_EQ(qwen2.weights.count("model.layers.1.self_attn.k_proj.bias"), 1u);
  const LoadedModel qwen3 = load_model(kDir + "tiny-qwen3");
  EXPECT_TRUE(qwen3.config.qk_norm);
  EXPECT_TRUE(qwen3.config.tie_embeddings);
  EXPECT_EQ(qwen3.config.head_dim, 8);
  EXPECT_EQ(qwen3.weights.count("lm_head.weight"), 0u);
}

TEST(ModelLoaderCheckWeights, MissingAndMisshapenTensors) {
  const LoadedModel m = load_model(kDir + "tiny-llama");
  WeightMap w = m.weights;
  w.erase("model.layers.1.mlp.up_proj.weight");
  expect_error([&] { check_weights(m.config, w); },
               {"missing", "model.layers.1.mlp.up_proj.weight", "[24, 16]"});
  w = m.weights;
  w["model.layers.0.self_attn.k_proj.weight"].shape = {16, 8};
  expect_error([&] { check_weights(m.config, w); },
               {"model.layers.0.self_attn.k_proj.weight", "[16, 8]", "[8, 16]"});
  w = m.weights;
  w.erase("lm_head.weight");
  expect_error([&] { check_weights(m.config, w); }, {"lm_head.weight", "not tied"});
  ModelConfig tied = m.config;
  tied.tie_embeddings = true;
  EXPECT_NO_THROW(check_weights(tied, w));
  ModelConfig unknown = m.config;
  unknown.architecture = "falcon";
  expect_error([&] { check_weights(unknown, m.weights); }, {"falcon"});
  ModelConfig qwen3 = m.config;
  qwen3.qk_norm = true;
  expect_error([&] { check_weights(qwen3, m.weights); }, {"q_norm"});
}

TEST(ModelLoaderHf, PathErrors) {
  expect_error([] { load_model(kDir + "no_such_model"); }, {"no_such_model", "does not exist"},
               ErrorKind::NotFound);
  expect_error([] { load_model(kDir + "dtypes.json"); }, {"unknown model format", "dtypes.json"},
               ErrorKind::Unsupported);
  expect_error([] { load_model(kDir + "dtypes.safetensors"); }, {"unknown model format"},
               ErrorKind::Unsupported);
  {
    ScratchDir d;
    expect_error([&] { load_model(d.str()); }, {"no config.json"}, ErrorKind::NotFound);
  }
  {
    ScratchDir d(kDir + "tiny-qwen2");
    fs::remove(d.file("model.safetensors"));
    expect_error([&] { load_model(d.str()); }, {"model.safetensors"}, ErrorKind::NotFound);
  }
  {
    ScratchDir d(kDir + "tiny-qwen2");
    d.write("config.json", "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\"}");
    expect_error([&] { load_model(d.str()); }, {"GPT2LMHeadModel"}, ErrorKind::Unsupported);
  }
  {
    ScratchDir d(kDir + "tiny-qwen2");
    d.write("config.json", "{ nope");
    expect_error([&] { load_model(d.str()); }, {"config.json", "not valid JSON"},
                 ErrorKind::InvalidArgument);
  }
  {
    // Weights that disagree with the config: the error names tensor and shapes.
    ScratchDir d(kDir + "tiny-qwen2");
    json j = read_json(d.file("config.json"));
    j["intermediate_size"] = 32;
    d.write("config.json", j.dump());
    expect_error([&] { load_model(d.str()); }, {"mlp", "[32, 16]", "[24, 16]"},
                 ErrorKind::InvalidArgument);
  }
}

}  // namespace
}  // namespace nc

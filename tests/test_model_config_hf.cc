// ModelConfig from Hugging Face config.json files: real models' files (hand-copied into
// tests/fixtures/loader/configs), defaults and variants, and the errors that name a bad field.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>
#include <string>
#include <vector>

#include "core/error.h"
#include "golden.h"
#include "loader_test_util.h"
#include "model/model_loader.h"

namespace nc {
namespace {

using nlohmann::json;
using namespace loader_test;  // NOLINT

ModelConfig hf_config(const std::string& name) {
  return config_from_hf_json(read_json(kDir + "configs/" + name));
}

// ---- config.json ----

TEST(ModelConfigHf, Llama31WithLlama3RopeScaling) {
  for (const char* file : {"llama31_8b.json", "llama31_v5.json"}) {
    SCOPED_TRACE(file);
    const ModelConfig c = hf_config(file);
    EXPECT_EQ(c.architecture, "llama");
    EXPECT_EQ(c.num_layers, 32);
    EXPECT_EQ(c.hidden_size, 4096);
    EXPECT_EQ(c.num_heads, 32);
    EXPECT_EQ(c.num_kv_heads, 8);
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_EQ(c.intermediate_size, 14336);
    EXPECT_EQ(c.vocab_size, 128256);
    EXPECT_EQ(c.max_position, 131072);
    EXPECT_EQ(c.rope_theta, 500000.0);
    EXPECT_EQ(c.rope_scaling.type, "llama3");
    EXPECT_EQ(c.rope_scaling.factor, 8.0);
    EXPECT_EQ(c.rope_scaling.low_freq_factor, 1.0);
    EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0);
    EXPECT_EQ(c.rope_scaling.original_max_position, 8192);
    EXPECT_EQ(c.rms_eps, 1e-5);
    EXPECT_FALSE(c.tie_embeddings);
    EXPECT_FALSE(c.qk_norm);
    EXPECT_FALSE(c.attention_bias);
    EXPECT_FALSE(c.o_proj_bias);
  }
}

TEST(ModelConfigHf, Qwen25HasBiasAndTiedEmbeddings) {
  const ModelConfig c = hf_config("qwen25_05b.json");
  EXPECT_EQ(c.architecture, "qwen2");
  EXPECT_EQ(c.num_layers, 24);
  EXPECT_EQ(c.hidden_size, 896);
  EXPECT_EQ(c.num_heads, 14);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.intermediate_size, 4864);
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.max_position, 32768);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, "none");
  EXPECT_EQ(c.rms_eps, 1e-6);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.o_proj_bias);
  EXPECT_FALSE(c.qk_norm);
}

TEST(ModelConfigHf, Qwen3HasExplicitHeadDimAndQkNorm) {
  const ModelConfig c = hf_config("qwen3_06b.json");
  EXPECT_EQ(c.architecture, "qwen3");
  EXPECT_EQ(c.num_layers, 28);
  EXPECT_EQ(c.hidden_size, 1024);
  EXPECT_EQ(c.num_heads, 16);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);  // not hidden / heads = 64
  EXPECT_EQ(c.intermediate_size, 3072);
  EXPECT_EQ(c.max_position, 40960);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, "none");
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_bias);
}

TEST(ModelConfigHf, SmolLM2IsLlama) {
  const ModelConfig c = hf_config("smollm2_135m.json");
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.max_position, 8192);
  EXPECT_EQ(c.rope_theta, 100000.0);
  EXPECT_EQ(c.rms_eps, 1e-5);
  EXPECT_TRUE(c.tie_embeddings);
}

TEST(ModelConfigHf, DefaultsAndVariants) {
  json j = read_json(kDir + "configs/smollm2_135m.json");
  j.erase("num_key_value_heads");
  j.erase("rope_theta");
  j.erase("architectures");  // model_type alone suffices
  j["head_dim"] = nullptr;   // null means "default"
  ModelConfig c = config_from_hf_json(j);
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.num_kv_heads, 9);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rope_theta, 10000.0);

  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};  // the older spelling of the kind
  c = config_from_hf_json(j);
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_EQ(c.rope_scaling.factor, 2.0);

  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_theta", 1234.0}, {"rope_type", "default"}};
  c = config_from_hf_json(j);
  EXPECT_EQ(c.rope_theta, 1234.0);
  EXPECT_EQ(c.rope_scaling.type, "none");

  j["attention_bias"] = true;  // Llama's flag covers q/k/v and o
  c = config_from_hf_json(j);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.o_proj_bias);
}

TEST(ModelConfigHf, Errors) {
  const json base = read_json(kDir + "configs/smollm2_135m.json");
  auto with = [&](auto edit) {
    json j = base;
    edit(j);
    return j;
  };
  expect_error(
      [&] {
        config_from_hf_json(with([](json& j) {
          j["architectures"] = {"FalconForCausalLM"};
          j["model_type"] = "falcon";
        }));
      },
      {"FalconForCausalLM", "falcon"});
  expect_error(
      [&] {
        config_from_hf_json(with([](json& j) {
          j.erase("architectures");
          j.erase("model_type");
        }));
      },
      {"architectures"});
  expect_error([&] { config_from_hf_json(with([](json& j) { j.erase("num_hidden_layers"); })); },
               {"num_hidden_layers"});
  // A bad layer count is named where it is read, before it sizes Gemma 2's per-layer flags.
  for (const int64_t layers : {int64_t(-1), int64_t(0), int64_t(1) << 40}) {
    json gemma = testing::fixture_config("tiny-gemma2");
    gemma["num_hidden_layers"] = layers;
    expect_error([&] { config_from_hf_json(gemma); },
                 {"num_hidden_layers = " + std::to_string(layers)});
  }
  expect_error([&] { config_from_hf_json(with([](json& j) { j["hidden_size"] = "576"; })); },
               {"hidden_size", "integer"});
  expect_error([&] { config_from_hf_json(with([](json& j) { j["num_key_value_heads"] = 4; })); },
               {"num_heads 9", "num_kv_heads 4"});
  expect_error([&] { config_from_hf_json(with([](json& j) { j["hidden_size"] = 580; })); },
               {"hidden_size 580", "num_attention_heads 9"});
  expect_error([&] { config_from_hf_json(with([](json& j) { j["num_hidden_layers"] = 0; })); },
               {"num_hidden_layers = 0"});
  expect_error([&] { config_from_hf_json(with([](json& j) { j["num_attention_heads"] = 0; })); },
               {"num_attention_heads"});
  expect_error([&] { config_from_hf_json(with([](json& j) { j["vocab_size"] = -5; })); },
               {"vocab_size"});
  {  // YaRN without original_max_position_embeddings: max_position_embeddings (transformers')
    const ModelConfig c = config_from_hf_json(with([](json& j) {
      j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
    }));
    EXPECT_EQ(c.rope_scaling.type, "yarn");
    EXPECT_EQ(c.rope_scaling.original_max_position, c.max_position);
    EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);
  }
  expect_error(
      [&] {
        config_from_hf_json(with([](json& j) {
          j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
        }));
      },
      {"low_freq_factor"});
  expect_error([&] { config_from_hf_json(with([](json& j) { j["tie_word_embeddings"] = 1; })); },
               {"tie_word_embeddings"});
  expect_error([&] { config_from_hf_json(json::array()); }, {"object"});
  // Absurd sizes are refused before anything multiplies them.
  expect_error(
      [&] {
        config_from_hf_json(with([](json& j) {
          j["num_attention_heads"] = int64_t(1) << 40;
          j["num_key_value_heads"] = int64_t(1) << 40;
          j["head_dim"] = int64_t(1) << 40;
        }));
      },
      {"implausibly large"});
  expect_error(
      [&] {
        config_from_hf_json(with([](json& j) { j["max_position_embeddings"] = int64_t(1) << 62; }));
      },
      {"max_position"});
}

TEST(ModelConfigValidate, NamesTheBadField) {
  ModelConfig c = hf_config("smollm2_135m.json");
  c.validate();
  ModelConfig bad = c;
  bad.architecture = "gpt2";
  expect_error([&] { bad.validate(); }, {"gpt2"});
  bad = c;
  bad.intermediate_size = 0;
  expect_error([&] { bad.validate(); }, {"intermediate_size"});
  bad = c;
  bad.head_dim = 63;
  expect_error([&] { bad.validate(); }, {"head_dim"});
  bad = c;
  bad.rms_eps = 0;
  expect_error([&] { bad.validate(); }, {"rms_eps"});
  bad = c;
  bad.rope_scaling.type = "llama3";
  bad.rope_scaling.low_freq_factor = 4;
  bad.rope_scaling.high_freq_factor = 1;
  expect_error([&] { bad.validate(); }, {"low_freq_factor"});
}

}  // namespace
}  // namespace nc

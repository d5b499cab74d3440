// Reading the configs of Mistral, Phi-3, Gemma 2 and Gemma 3 (model/config_hf.cc): the fields the
// decoder needs, both transformers spellings, the families' defaults, and an nc::Error naming the
// field and value for what the decoder cannot serve.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "golden.h"
#include "model/layer_kinds.h"
#include "model/model_config.h"
#include "model/rope.h"

namespace nc {
namespace {

using json = nlohmann::json;

using testing::fixture_config;

// A Gemma 2 config in transformers 5's spelling (as save_pretrained writes it).
json gemma2_json() {
  return json{{"architectures", {"Gemma2ForCausalLM"}},
              {"model_type", "gemma2"},
              {"hidden_size", 64},
              {"head_dim", 256},
              {"intermediate_size", 64},
              {"num_hidden_layers", 4},
              {"num_attention_heads", 2},
              {"num_key_value_heads", 1},
              {"max_position_embeddings", 256},
              {"vocab_size", 512},
              {"hidden_activation", "gelu_pytorch_tanh"},
              {"query_pre_attn_scalar", 64},
              {"sliding_window", 8},
              {"layer_types",
               {"sliding_attention", "full_attention", "sliding_attention", "full_attention"}},
              {"attn_logit_softcapping", 5.0},
              {"final_logit_softcapping", 8.0},
              {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}};
}

// The message of the nc::Error that reading j throws ("" when it reads).
std::string error_of(const json& j) {
  try {
    config_from_hf_json(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigVariants, Gemma2ReadsEveryVariantField) {
  const ModelConfig c = config_from_hf_json(gemma2_json());
  EXPECT_EQ(c.architecture, "gemma2");
  EXPECT_EQ(c.activation, Activation::GeluTanh);
  EXPECT_DOUBLE_EQ(c.attn_scale, 1.0 / 8.0);  // 64^-1/2, not head_dim 256's
  EXPECT_DOUBLE_EQ(c.attn_soft_cap, 5.0);
  EXPECT_DOUBLE_EQ(c.final_soft_cap, 8.0);
  EXPECT_TRUE(c.scale_embeddings && c.sandwich_norms && c.norm_weight_offset);
  EXPECT_TRUE(c.tie_embeddings);  // transformers omits Gemma's tie_word_embeddings = true
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.sliding_window, 8);
  EXPECT_EQ(c.layer_sliding, (std::vector<bool>{true, false, true, false}));
  const LayerKinds k = layer_kinds(c);
  ASSERT_EQ(k.kinds.size(), 2u);
  EXPECT_EQ(k.of_layer, (std::vector<int>{0, 1, 0, 1}));
  EXPECT_EQ(k.kinds[0].window_left, 7);  // HF's window 8 = the row and 7 keys before it
  EXPECT_EQ(k.kinds[1].window_left, -1);
  EXPECT_FLOAT_EQ(k.kinds[1].logits_soft_cap, 5.0f);
}

TEST(ConfigVariants, Gemma2DefaultsWhenAbsentAndOffWhenNull) {
  json j = gemma2_json();
  j.erase("attn_logit_softcapping");
  j.erase("layer_types");
  j["final_logit_softcapping"] = nullptr;
  const ModelConfig c = config_from_hf_json(j);
  EXPECT_DOUBLE_EQ(c.attn_soft_cap, 50.0);  // Gemma2Config's default
  EXPECT_DOUBLE_EQ(c.final_soft_cap, 0.0);  // null: none
  EXPECT_EQ(c.layer_sliding, (std::vector<bool>{true, false, true, false}));  // even layers slide
}

TEST(ConfigVariants, UnservableConfigsNameTheFieldAndValue) {
  json j = gemma2_json();
  j["hidden_activation"] = "gelu";
  EXPECT_NE(error_of(j).find("hidden_activation 'gelu'"), std::string::npos) << error_of(j);
  j = gemma2_json();
  j["layer_types"] = {"sliding_attention", "full_attention"};
  EXPECT_NE(error_of(j).find("'layer_types' must list one type per layer (4), got 2"),
            std::string::npos)
      << error_of(j);
  j = gemma2_json();
  j["layer_types"][1] = "chunked_attention";
  EXPECT_NE(error_of(j).find("layer_types[1] = 'chunked_attention'"), std::string::npos)
      << error_of(j);
  j = gemma2_json();
  j["vision_config"] = json::object();
  EXPECT_NE(error_of(j).find("'vision_config'"), std::string::npos) << error_of(j);
  j = gemma2_json();
  j["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", 4.0}};
  EXPECT_NE(error_of(j).find("rope scaling type 'dynamic'"), std::string::npos) << error_of(j);
  json m = fixture_config("tiny-mistral");
  m["hidden_act"] = "relu";
  EXPECT_NE(error_of(m).find("hidden_act 'relu'"), std::string::npos) << error_of(m);
  json q = fixture_config("tiny-qwen2");
  q["use_sliding_window"] = true;
  EXPECT_NE(error_of(q).find("use_sliding_window"), std::string::npos) << error_of(q);
}

TEST(ConfigVariants, MistralWindowOnEveryLayer) {
  const ModelConfig c = config_from_hf_json(fixture_config("tiny-mistral"));
  EXPECT_EQ(c.architecture, "mistral");
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);  // from rope_parameters (transformers 5)
  const LayerKinds k = layer_kinds(c);
  ASSERT_EQ(k.kinds.size(), 1u);
  EXPECT_EQ(k.kinds[0].window_left, 7);
  json j = fixture_config("tiny-mistral");
  j["sliding_window"] = nullptr;
  EXPECT_EQ(layer_kinds(config_from_hf_json(j)).kinds[0].window_left, -1);
  j.erase("sliding_window");  // MistralConfig's default
  EXPECT_EQ(config_from_hf_json(j).sliding_window, 4096);
}

// Phi-3's longrope: the long factors when the served context (--max-model-len, else the
// checkpoint's) exceeds the original one, the short ones otherwise; cos/sin scaled by
// sqrt(1 + ln(s) / ln(original)) with s from the checkpoint's context.
TEST(ConfigVariants, LongropePicksFactorsByServedContext) {
  json j = fixture_config("tiny-mistral");
  j["architectures"] = {"Phi3ForCausalLM"};
  j["model_type"] = "phi3";
  j["head_dim"] = 32;  // 16 frequencies, as the factors below
  j.erase("rope_parameters");
  j["rope_theta"] = 10000.0;
  j["original_max_position_embeddings"] = 16;
  j["max_position_embeddings"] = 64;
  std::vector<double> s(16), l(16);
  for (int i = 0; i < 16; ++i) s[size_t(i)] = 1.0 + 0.01 * i, l[size_t(i)] = 1.0 + i;
  j["rope_scaling"] = {{"type", "longrope"}, {"short_factor", s}, {"long_factor", l}};
  ModelConfig c = config_from_hf_json(j);
  EXPECT_EQ(c.rope_scaling.type, "longrope");
  const double af = std::sqrt(1.0 + std::log(4.0) / std::log(16.0));
  EXPECT_DOUBLE_EQ(longrope_attention_factor(c), af);
  // Position 1, frequency i = 15 (the last): angle = 1 / (factor * theta^(30/32)).
  auto angle_cos = [](const ModelConfig& cfg) {
    const HostTensor t = rope_cos_sin_table(cfg, 2);
    return t.data[size_t(cfg.head_dim + 15)];
  };
  const double base = std::pow(10000.0, 30.0 / 32.0);
  EXPECT_NEAR(angle_cos(c), af * std::cos(1.0 / (16.0 * base)), 1e-6);
  // --max-model-len within the original context: the short factors, the checkpoint's attention
  // factor (what transformers computes for a sequence that short).
  ModelConfig served = c;
  served.max_served_position = 16;
  EXPECT_NEAR(angle_cos(served), af * std::cos(1.0 / (s[15] * base)), 1e-6);
  c.max_position = 16;  // served context within the original: short factors, no scaling
  EXPECT_NEAR(angle_cos(c), std::cos(1.0 / (s[15] * base)), 1e-6);
  j["rope_scaling"]["long_factor"] = std::vector<double>(3, 1.0);
  EXPECT_NE(error_of(j).find("longrope needs head_dim / 2 = 16"), std::string::npos) << error_of(j);
  j["rope_scaling"]["long_factor"] = l;
  j["partial_rotary_factor"] = 0.5;
  EXPECT_NE(error_of(j).find("partial_rotary_factor 0.5"), std::string::npos) << error_of(j);
}

// Gemma 3's sliding layers have their own rope base, its global layers rope_theta with scaling,
// in transformers 5's per-layer-type rope_parameters and in the Hub's spelling alike.
TEST(ConfigVariants, Gemma3RopePerLayerKindInBothSpellings) {
  json v5 = gemma2_json();
  v5["architectures"] = {"Gemma3ForCausalLM"};
  v5["model_type"] = "gemma3_text";
  v5["num_hidden_layers"] = 6;
  v5.erase("layer_types");
  v5.erase("attn_logit_softcapping");
  v5.erase("final_logit_softcapping");
  v5["rope_parameters"] = {
      {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}},
      {"full_attention", {{"rope_type", "linear"}, {"factor", 8.0}, {"rope_theta", 1e6}}}};
  json hub = v5;
  hub.erase("rope_parameters");
  hub["rope_theta"] = 1e6;
  hub["rope_local_base_freq"] = 10000.0;
  hub["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 8.0}};
  hub["sliding_window_pattern"] = 6;
  for (const json& j : {v5, hub}) {
    const ModelConfig c = config_from_hf_json(j);
    EXPECT_EQ(c.architecture, "gemma3");
    EXPECT_TRUE(c.qk_norm);
    EXPECT_DOUBLE_EQ(c.attn_soft_cap, 0.0);  // Gemma 3 has none by default
    EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
    EXPECT_EQ(c.rope_scaling.type, "linear");
    EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
    EXPECT_DOUBLE_EQ(c.sliding_rope_theta, 10000.0);
    EXPECT_EQ(c.layer_sliding, (std::vector<bool>{true, true, true, true, true, false}));
    // Position 1, frequency 1: the sliding table is unscaled with base 1e4, the full one 1e6 / 8.
    const HostTensor local = rope_cos_sin_table(c, 2, true), full = rope_cos_sin_table(c, 2);
    const int64_t D = c.head_dim;
    EXPECT_NEAR(local.data[size_t(D + 1)], std::cos(std::pow(10000.0, -2.0 / double(D))), 1e-6);
    EXPECT_NEAR(full.data[size_t(D + 1)], std::cos(std::pow(1e6, -2.0 / double(D)) / 8.0), 1e-6);
  }
}

}  // namespace
}  // namespace nc

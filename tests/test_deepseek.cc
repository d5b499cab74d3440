// DeepSeek-V2/V3 around the MLA decoder (model/deepseek.h, config_hf.cc, rope.cc): the config
// fields read from the tiny fixtures' config.json (YaRN's softmax scale, the rope layout, the
// MLA ranks), the latent cache's size, llama.cpp's k_b / v_b split undone, the MTP layers
// dropped, and the errors for what is not served (a routing method, missing fields and tensors).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "golden.h"
#include "model/deepseek.h"
#include "model/llama.h"
#include "model/model_loader.h"
#include "model/rope.h"

namespace nc {
namespace {

using json = nlohmann::json;

using testing::fixture_config;

std::string error_of(const json& j) {
  try {
    config_from_hf_json(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

double mscale(double factor, double m) {
  return 0.1 * m * std::log(factor) + 1.0;
}

TEST(DeepseekConfig, V2LiteReadsMlaFieldsAndYarnScale) {
  const ModelConfig c = config_from_hf_json(fixture_config("tiny-deepseek-v2-lite"));
  EXPECT_EQ(c.architecture, "deepseek_v2");
  EXPECT_TRUE(c.mla.enabled());
  EXPECT_EQ(c.mla.kv_lora_rank, 32);
  EXPECT_EQ(c.mla.q_lora_rank, 0);  // null: a plain q_proj
  EXPECT_EQ(c.mla.qk_nope_head_dim, 16);
  EXPECT_EQ(c.mla.v_head_dim, 16);
  EXPECT_EQ(c.head_dim, 8);  // qk_rope_head_dim
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_TRUE(c.mla.rope_interleave);
  EXPECT_EQ(c.rope_scaling.type, "yarn");
  EXPECT_EQ(c.rope_scaling.original_max_position, 64);
  const double m = mscale(4.0, 0.707);
  EXPECT_NEAR(c.attn_scale, m * m / std::sqrt(24.0), 1e-12);
  EXPECT_NEAR(yarn_attention_factor(c.rope_scaling), 1.0, 1e-12);  // mscale == mscale_all_dim
}

TEST(DeepseekConfig, V3ReadsQLoraInterleaveAndAttentionFactor) {
  json j = fixture_config("tiny-deepseek-v3");
  ModelConfig c = config_from_hf_json(j);
  EXPECT_EQ(c.architecture, "deepseek_v3");
  EXPECT_EQ(c.mla.q_lora_rank, 24);
  EXPECT_TRUE(c.mla.rope_interleave);
  EXPECT_NEAR(yarn_attention_factor(c.rope_scaling), mscale(4.0, 1.0) / mscale(4.0, 0.8), 1e-12);
  // The cos/sin table carries that factor: cos^2 + sin^2 = factor^2 at every entry.
  const HostTensor t = rope_cos_sin_table(c, 10);
  const double f = yarn_attention_factor(c.rope_scaling);
  for (int64_t p = 0; p < 10; ++p)
    for (int64_t i = 0; i < 4; ++i) {
      const double cs = t.data[p * 8 + i], sn = t.data[p * 8 + 4 + i];
      EXPECT_NEAR(cs * cs + sn * sn, f * f, 1e-5);
    }
  j["rope_interleave"] = false;
  EXPECT_FALSE(config_from_hf_json(j).mla.rope_interleave);
}

TEST(DeepseekConfig, UnservableConfigsNameTheField) {
  const json base = fixture_config("tiny-deepseek-v2");  // Hub spelling: rope_scaling
  json moe = base;
  moe["topk_method"] = "random";
  EXPECT_NE(error_of(moe).find("topk_method 'random'"), std::string::npos) << error_of(moe);
  json no_rank = base;
  no_rank.erase("kv_lora_rank");
  EXPECT_NE(error_of(no_rank).find("kv_lora_rank"), std::string::npos) << error_of(no_rank);
  json rope = base;
  rope["rope_scaling"]["rope_type"] = "dynamic";
  EXPECT_NE(error_of(rope).find("dynamic"), std::string::npos) << error_of(rope);
  json yarn = base;  // no original context: max_position_embeddings, as transformers
  yarn["rope_scaling"].erase("original_max_position_embeddings");
  EXPECT_EQ(error_of(yarn), "");
  EXPECT_EQ(config_from_hf_json(yarn).rope_scaling.original_max_position,
            config_from_hf_json(yarn).max_position);
}

// The benchmark shape (configs/deepseek-v2-lite.json, DeepSeek-V2-Lite's config.json): MLA
// 512 + 64 without q_lora, 64 routed experts top-6 with two shared, layer 0 dense.
TEST(DeepseekConfig, V2LiteBenchmarkShapeReads) {
  const ModelConfig c =
      load_model_config(testing::fixtures_dir() + "/../../configs/deepseek-v2-lite.json");
  EXPECT_EQ(c.mla.kv_lora_rank, 512);
  EXPECT_EQ(c.mla.q_lora_rank, 0);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.mla.qk_nope_head_dim, 128);
  EXPECT_EQ(c.mla.v_head_dim, 128);
  EXPECT_EQ(c.moe.routing.num_experts, 64);
  EXPECT_EQ(c.moe.routing.top_k, 6);
  EXPECT_EQ(c.moe.shared_intermediate, 2 * 1408);
  EXPECT_FALSE(c.moe.is_sparse(0));
  EXPECT_TRUE(c.moe.is_sparse(26));
  const double m = mscale(40.0, 0.707);
  EXPECT_NEAR(c.attn_scale, m * m / std::sqrt(192.0), 1e-12);
}

TEST(DeepseekModel, KvCacheHoldsOneLatentRowPerToken) {
  const ModelConfig c = config_from_hf_json(fixture_config("tiny-deepseek-v3"));
  auto be = make_cpu_backend();
  LlamaModel model(c, RandomWeights{3}, *be);
  // layers x page_size x (kv_lora_rank + qk_rope_head_dim) float32 values, no V.
  EXPECT_EQ(model.kv_bytes_per_page(16), 2 * 16 * (32 + 8) * 4);
  const KVCache kv = model.make_kv_cache(5, 16);
  EXPECT_TRUE(kv.shape.latent);
  EXPECT_EQ(kv.layers[0].shape(), (Shape{5, 16, 1, 40}));
}

TEST(DeepseekWeights, GgufKbVbSplitMergesBackIntoKvB) {
  ModelConfig c = config_from_hf_json(fixture_config("tiny-deepseek-v2"));
  const int64_t H = c.num_heads, Dn = 16, Dv = 16, Dl = 32;
  std::mt19937 rng(5);
  std::normal_distribution<float> d;
  HostTensor kv_b{{H * (Dn + Dv), Dl}, std::vector<float>(size_t(H * (Dn + Dv) * Dl))};
  for (float& x : kv_b.data) x = d(rng);
  // llama.cpp's converter: view [H, Dn + Dv, Dl], k_b = rows [0, Dn) transposed, v_b the rest.
  HostTensor kb{{H, Dl, Dn}, std::vector<float>(size_t(H * Dl * Dn))};
  HostTensor vb{{H, Dv, Dl}, std::vector<float>(size_t(H * Dv * Dl))};
  for (int64_t h = 0; h < H; ++h)
    for (int64_t r = 0; r < Dn + Dv; ++r)
      for (int64_t l = 0; l < Dl; ++l) {
        const float x = kv_b.data[size_t((h * (Dn + Dv) + r) * Dl + l)];
        if (r < Dn)
          kb.data[size_t((h * Dl + l) * Dn + r)] = x;
        else
          vb.data[size_t((h * Dv + r - Dn) * Dl + l)] = x;
      }
  WeightMap w;
  w["model.layers.1.self_attn.k_b_proj.weight"] = kb;
  w["model.layers.1.self_attn.v_b_proj.weight"] = vb;
  merge_gguf_kv_b(c, w);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w.at("model.layers.1.self_attn.kv_b_proj.weight").shape, kv_b.shape);
  EXPECT_EQ(w.at("model.layers.1.self_attn.kv_b_proj.weight").data, kv_b.data);
  WeightMap half;
  half["model.layers.0.self_attn.k_b_proj.weight"] = kb;
  EXPECT_THROW(merge_gguf_kv_b(c, half), Error);
}

TEST(DeepseekWeights, MtpLayersAreDroppedAndMissingTensorsNamed) {
  const std::string dir = testing::fixtures_dir() + "/tiny-deepseek-v2";
  LoadedModel lm = load_model(dir);
  WeightMap w = lm.weights;
  w["model.layers.2.eh_proj.weight"] = HostTensor{{2, 2}, std::vector<float>(4)};
  w["model.layers.2.self_attn.q_a_proj.weight"] = HostTensor{{1}, std::vector<float>(1)};
  EXPECT_EQ(drop_mtp_layers(lm.config, w), 2);
  EXPECT_EQ(w.size(), lm.weights.size());
  w.erase("model.layers.1.self_attn.kv_b_proj.weight");
  try {
    check_weights(lm.config, w);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.self_attn.kv_b_proj.weight"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace nc

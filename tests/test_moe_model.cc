// Qwen3-MoE's config and weights (model/moe_config.h, model/moe_weights.h) around the tiny
// fixture (tests/fixtures/tiny-qwen3-moe, made by transformers; its logits are checked in
// test_model_golden_variants.cc): the fields read, which layers are sparse, the errors that name
// the field or the tensor, and the other stored forms of the experts (transformers 5's stacked
// gate_up_proj, llama.cpp's ffn_{gate,up,down}_exps) giving the same logits as per-expert
// tensors.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"
#include "formats/safetensors.h"
#include "golden.h"
#include "model/llama.h"
#include "model/model_loader.h"
#include "model/moe_weights.h"
#include "seq_runner.h"

namespace nc {
namespace test_moe_model {

std::string fixture() {
  return testing::fixtures_dir() + "/tiny-qwen3-moe";
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(MoeConfig, Qwen3MoeFieldsFromConfigJson) {
  const ModelConfig c = load_model_config(fixture());
  EXPECT_EQ(c.architecture, "qwen3_moe");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.moe.routing.num_experts, 8);
  EXPECT_EQ(c.moe.routing.top_k, 2);
  EXPECT_TRUE(c.moe.routing.renormalize);
  EXPECT_EQ(c.moe.routing.scoring, MoeScoring::Softmax);
  EXPECT_EQ(c.moe.expert_intermediate, 32);
  EXPECT_EQ(c.moe.shared_intermediate, 0);
  EXPECT_EQ(c.moe.sparse_layers, (std::vector<bool>{false, true}));  // mlp_only_layers [0]
}

TEST(MoeConfig, SparseLayerRules) {
  EXPECT_EQ(qwen_sparse_layers(4, 2, {}), (std::vector<bool>{false, true, false, true}));
  EXPECT_EQ(qwen_sparse_layers(4, 1, {0, 3}), (std::vector<bool>{false, true, true, false}));
  EXPECT_EQ(deepseek_sparse_layers(4, 1, 1), (std::vector<bool>{false, true, true, true}));
  EXPECT_EQ(deepseek_sparse_layers(5, 1, 2), (std::vector<bool>{false, false, true, false, true}));
}

TEST(MoeConfig, UnservableConfigsNameTheField) {
  const nlohmann::json base = read_json_file(fixture() + "/config.json");
  auto err = [&](const char* key, const nlohmann::json& v) {
    nlohmann::json j = base;
    j[key] = v;
    return error_of([&] { config_from_hf_json(j); });
  };
  EXPECT_NE(err("num_experts_per_tok", 9).find("num_experts_per_tok 9"), std::string::npos);
  EXPECT_NE(err("num_experts", 0).find("num_experts"), std::string::npos);
  EXPECT_NE(err("mlp_only_layers", nlohmann::json::array({5})).find("mlp_only_layers"),
            std::string::npos);
  EXPECT_NE(err("decoder_sparse_step", 0).find("decoder_sparse_step"), std::string::npos);
  EXPECT_NE(err("shared_expert_intermediate_size", 16).find("shared_expert_intermediate_size"),
            std::string::npos);
}

// configs/qwen3-30b-a3b.json (the benchmark shape for --load-format dummy): 48 sparse layers of
// 128 experts, top-8; the tensors the loader expects hold 30.5 B parameters (61 GB in bf16: one
// H200), of which about 3.3 B are active per token (the "A3B").
TEST(MoeConfig, ShippedQwen3_30B_A3B) {
  const ModelConfig c =
      load_model_config(std::string(NC_FIXTURES_DIR) + "/../../configs/qwen3-30b-a3b.json");
  EXPECT_EQ(c.num_layers, 48);
  EXPECT_EQ(c.moe.routing.num_experts, 128);
  EXPECT_EQ(c.moe.routing.top_k, 8);
  EXPECT_EQ(c.moe.expert_intermediate, 768);
  EXPECT_EQ(std::count(c.moe.sparse_layers.begin(), c.moe.sparse_layers.end(), true), 48);
  double total = 0, experts = 0;
  for (const WeightSpec& w : expected_weights(c)) {
    double n = 1;
    for (int64_t d : w.shape) n *= double(d);
    total += n;
    if (w.name.find("mlp.experts.") != std::string::npos) experts += n;
  }
  EXPECT_NEAR(total / 1e9, 30.5, 0.1);
  EXPECT_NEAR((total - experts * (1 - 8.0 / 128)) / 1e9, 3.35, 0.1);
}

// DeepSeek's fields (the MLA models' reader calls read_moe_hf with architecture deepseek_v2 or
// deepseek_v3): V3's noaux_tc with groups, bias and scaling; V2-Lite's greedy softmax; the errors.
TEST(MoeConfig, DeepSeekFields) {
  ModelConfig c;
  c.num_layers = 4;
  c.architecture = "deepseek_v3";
  nlohmann::json v3 = {{"n_routed_experts", 16},
                       {"num_experts_per_tok", 4},
                       {"moe_intermediate_size", 8},
                       {"n_shared_experts", 1},
                       {"first_k_dense_replace", 1},
                       {"n_group", 4},
                       {"topk_group", 2},
                       {"topk_method", "noaux_tc"},
                       {"norm_topk_prob", true},
                       {"routed_scaling_factor", 2.5}};
  read_moe_hf(v3, c);
  EXPECT_EQ(c.moe.routing.scoring, MoeScoring::Sigmoid);
  EXPECT_TRUE(c.moe.routing.has_bias());
  EXPECT_EQ(c.moe.routing.n_group, 4);
  EXPECT_EQ(c.moe.routing.topk_group, 2);
  EXPECT_FLOAT_EQ(c.moe.routing.scaling, 2.5f);
  EXPECT_EQ(c.moe.shared_intermediate, 8);
  EXPECT_EQ(c.moe.sparse_layers, (std::vector<bool>{false, true, true, true}));
  c.moe = {};
  c.architecture = "deepseek_v2";
  nlohmann::json v2 = {
      {"n_routed_experts", 64}, {"num_experts_per_tok", 6}, {"moe_intermediate_size", 8},
      {"n_shared_experts", 2},  {"topk_method", "greedy"},  {"n_group", 1},
      {"topk_group", 1}};
  read_moe_hf(v2, c);
  EXPECT_EQ(c.moe.routing.scoring, MoeScoring::Softmax);
  EXPECT_FALSE(c.moe.routing.renormalize);
  EXPECT_EQ(c.moe.shared_intermediate, 16);
  c.moe = {};
  v2["topk_method"] = "random";
  EXPECT_NE(error_of([&] { read_moe_hf(v2, c); }).find("topk_method 'random'"), std::string::npos);
  c.moe = {};
  v2["topk_method"] = "greedy";
  v2["scoring_func"] = "sigmoid";
  EXPECT_NE(error_of([&] { read_moe_hf(v2, c); }).find("scoring_func 'sigmoid'"),
            std::string::npos);
}

TEST(MoeWeights, MissingExpertTensorIsNamed) {
  LoadedModel lm = load_model(fixture());
  const ModelConfig& c = lm.config;
  WeightMap w;
  for (int64_t e = 0; e < 8; ++e)
    for (const char* p : {"gate_proj", "up_proj", "down_proj"})
      if (!(e == 3 && std::string(p) == "up_proj"))
        w[fmt::format("model.layers.1.mlp.experts.{}.{}.weight", e, p)] =
            HostTensor{std::string(p) == "down_proj" ? Shape{64, 32} : Shape{32, 64},
                       std::vector<float>(2048, 0.0f)};
  const std::string msg = error_of([&] { stack_moe_weights(c, w); });
  EXPECT_NE(msg.find("model.layers.1.mlp.experts.3.up_proj.weight"), std::string::npos) << msg;
  WeightMap none;
  EXPECT_NE(error_of([&] { stack_moe_weights(c, none); }).find("mlp.experts.0.gate_proj.weight"),
            std::string::npos);
}

TEST(MoeWeights, GgufNamesMapToTheStackedParts) {
  EXPECT_EQ(gguf_to_hf_name("blk.1.ffn_gate_inp.weight", "qwen3_moe"),
            "model.layers.1.mlp.gate.weight");
  EXPECT_EQ(gguf_to_hf_name("blk.1.ffn_gate_exps.weight", "qwen3_moe"),
            "model.layers.1.mlp.experts.gate_proj.weight");
  EXPECT_EQ(gguf_to_hf_name("blk.2.ffn_down_exps.weight", "qwen3_moe"),
            "model.layers.2.mlp.experts.down_proj.weight");
  EXPECT_EQ(gguf_to_hf_name("blk.0.exp_probs_b.bias", "deepseek2"),
            "model.layers.0.mlp.gate.e_score_correction.bias");
  EXPECT_EQ(gguf_to_hf_name("blk.0.ffn_up_shexp.weight", "deepseek2"),
            "model.layers.0.mlp.shared_experts.up_proj.weight");
}

// Logits of one prompt through a model made from `w`.
std::vector<float> logits_of(const ModelConfig& c, const WeightMap& w) {
  auto backend = make_cpu_backend();
  LlamaModel model(c, w, *backend);
  testing::SeqRunner runner(model, 4, 64);
  const std::vector<testing::GoldenPrompt> golden = testing::read_golden(fixture());
  return runner.step({runner.add_sequence()}, {golden[1].ids})[0];
}

// Batch invariance through the whole model: prompt 1's logits alone and prefilled in one step with
// the other two prompts (whose tokens share its experts) are the same bits.
TEST(MoeModel, PromptLogitsDoNotDependOnBatchmates) {
  const LoadedModel lm = load_model(fixture());
  const std::vector<testing::GoldenPrompt> golden = testing::read_golden(fixture());
  auto backend = make_cpu_backend();
  LlamaModel model(lm.config, lm.weights, *backend);
  testing::SeqRunner alone(model, 4, 64);
  const std::vector<float> one = alone.step({alone.add_sequence()}, {golden[1].ids})[0];
  LlamaModel model2(lm.config, lm.weights, *backend);
  testing::SeqRunner batch(model2, 4, 64);
  std::vector<int> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(batch.add_sequence());
  const auto all = batch.step(ids, {golden[0].ids, golden[1].ids, golden[2].ids});
  EXPECT_EQ(all[1], one);
}

// The checkpoint's per-expert tensors restacked as llama.cpp stores them ([E, I, H] gate and up,
// [E, H, I] down) and as transformers 5 holds them ([E, 2I, H] gate_up): the same logits, bit
// for bit (the same values reach the same products).
TEST(MoeWeights, StackedFormsGiveTheSameLogits) {
  const std::string dir = fixture();
  const ModelConfig c = load_model_config(dir);
  const WeightMap per_expert = load_safetensors_dir(dir);
  WeightMap loaded = per_expert;
  stack_moe_weights(c, loaded);
  const std::vector<float> want = logits_of(c, loaded);
  const std::string p = "model.layers.1.mlp.experts.";
  WeightMap gguf = per_expert, v5 = per_expert;
  for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) {
    HostTensor stacked;
    for (int64_t e = 0; e < 8; ++e) {
      const std::string name = fmt::format("{}{}.{}.weight", p, e, proj);
      const HostTensor& t = per_expert.at(name);
      stacked.shape = {8, t.shape[0], t.shape[1]};
      stacked.data.insert(stacked.data.end(), t.data.begin(), t.data.end());
      gguf.erase(name);
      if (std::string(proj) == "down_proj") v5.erase(name);
    }
    gguf[p + proj + ".weight"] = stacked;
    if (std::string(proj) == "down_proj") v5[p + "down_proj"] = stacked;
  }
  HostTensor gate_up{{8, 64, 64}, {}};
  for (int64_t e = 0; e < 8; ++e)
    for (const char* proj : {"gate_proj", "up_proj"}) {
      const std::string name = fmt::format("{}{}.{}.weight", p, e, proj);
      const HostTensor& t = per_expert.at(name);
      gate_up.data.insert(gate_up.data.end(), t.data.begin(), t.data.end());
      v5.erase(name);
    }
  v5[p + "gate_up_proj"] = gate_up;
  for (WeightMap* w : {&gguf, &v5}) {
    stack_moe_weights(c, *w);
    check_weights(c, *w);
    EXPECT_EQ(logits_of(c, *w), want);
  }
}

}  // namespace test_moe_model
}  // namespace nc

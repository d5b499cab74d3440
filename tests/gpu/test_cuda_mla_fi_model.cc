// A DeepSeek-V2-Lite-shaped model (configs/deepseek-v2-lite.json's attention: 16 heads, latent
// 512 + rope 64, nope 128, v 128, YaRN factor 40 with its mscale; hidden 512, 2 dense layers,
// vocab 1024, random weights) on the CUDA backend, whose MLA then runs FlashInfer's kernels
// (mla_fi_host.h's rule), against the CPU backend: a prefill of six prompts (one of 700 tokens:
// its decodes split the KV), then decode steps through CUDA graphs on one backend and eagerly on
// another. Bounds: the MLA model tests' (test_cuda_moe_mla_graphs.cc): logits within 3e-2 of the
// CPU, graph within 2e-2 of eager, and bit for bit where the batch fills its bucket exactly (the
// same kernels on the same schedule: mla_fi_host.h pads eager and graph plans alike).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>

#include "gpu_test_util.h"
#include "model/llama.h"
#include "model/model_loader.h"
#include "seq_runner.h"

namespace nc::testing {
namespace {

std::string v2_lite_attention_config() {
  const auto path = std::filesystem::temp_directory_path() / "nc_gpu_v2_lite_mla.json";
  std::FILE* f = std::fopen(path.c_str(), "w");
  EXPECT_NE(f, nullptr) << path;
  if (!f) return path.string();
  std::fputs(R"({"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
    "hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 2,
    "first_k_dense_replace": 2, "moe_layer_freq": 1, "n_routed_experts": 8,
    "num_experts_per_tok": 2, "moe_intermediate_size": 128, "n_shared_experts": 1, "n_group": 1,
    "topk_group": 1, "topk_method": "greedy", "norm_topk_prob": false, "scoring_func": "softmax",
    "routed_scaling_factor": 1.0, "num_attention_heads": 16, "num_key_value_heads": 16,
    "kv_lora_rank": 512, "q_lora_rank": null, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "v_head_dim": 128, "max_position_embeddings": 163840, "rms_norm_eps": 1e-6,
    "rope_theta": 10000, "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40,
    "mscale": 0.707, "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096,
    "type": "yarn"}, "tie_word_embeddings": false, "vocab_size": 1024, "attention_bias": false,
    "hidden_act": "silu", "bos_token_id": 0, "eos_token_id": 1})",
             f);
  std::fclose(f);
  return path.string();
}

class CudaMlaFiModel : public GpuVsCpu {};

TEST_F(CudaMlaFiModel, V2LiteAttentionGraphDecodeMatchesEagerAndCpu) {
  const ModelConfig cfg = load_model_config(v2_lite_attention_config());
  ASSERT_TRUE(cfg.mla.enabled());
  auto gpu2 = make_cuda_backend(0);
  LlamaModel mg(cfg, RandomWeights{9}, *gpu), me(cfg, RandomWeights{9}, *gpu2),
      mc(cfg, RandomWeights{9}, *cpu);
  mg.set_graph_options(GraphOptions{true, 16});
  SeqRunner rg(mg, 16, 256), re(me, 16, 256), rc(mc, 16, 256);
  std::uniform_int_distribution<int32_t> tok(0, int32_t(cfg.vocab_size) - 1);
  const int S = 6;
  std::vector<int> all;
  std::vector<std::vector<int32_t>> prefill;
  for (int s = 0; s < S; ++s) {
    rg.add_sequence(), re.add_sequence(), rc.add_sequence();
    all.push_back(s);
    std::vector<int32_t> p(s == 0 ? 700 : 3 + 17 * s);
    for (auto& x : p) x = tok(rng);
    prefill.push_back(p);
  }
  double worst_eager = 0, worst_cpu = 0;
  int steps = 0, exact = 0;
  auto run = [&](const std::vector<int>& ids, const std::vector<std::vector<int32_t>>& toks,
                 bool bit_exact) {
    const auto og = rg.step(ids, toks), oe = re.step(ids, toks), oc = rc.step(ids, toks);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (bit_exact) {
        EXPECT_TRUE(og[i] == oe[i])
            << "graph and eager logits differ: decode " << steps << ", sequence " << ids[i]
            << ", rel error " << rel_error(og[i], oe[i]);
      }
      worst_eager = std::max(worst_eager, rel_error(og[i], oe[i]));
      worst_cpu = std::max(worst_cpu, rel_error(og[i], oc[i]));
    }
    exact += bit_exact;
  };
  run(all, prefill, false);  // prefill: eager on both
  auto decode = [&](const std::vector<int>& ids, int n) {
    for (int k = 0; k < n; ++k, ++steps) {
      std::vector<std::vector<int32_t>> t;
      for (size_t i = 0; i < ids.size(); ++i) t.push_back({tok(rng)});
      const size_t b = ids.size();
      run(ids, t, b == 1 || b == 2 || b == 4 || b == 8);
    }
  };
  decode(all, 3);           // bucket 8, 2 padding rows
  decode({0, 2, 3, 5}, 2);  // bucket 4, exact
  decode({0}, 2);           // bucket 1, the long context
  decode({1, 4}, 1);        // bucket 2, exact
  decode(all, 1);           // bucket 8 again: replayed over grown page tables
  std::printf("v2-lite attention model: graph vs eager %.2e, vs CPU %.2e (%d exact steps)\n",
              worst_eager, worst_cpu, exact);
  EXPECT_EQ(mg.num_graph_steps(), steps);
  EXPECT_EQ(me.num_graph_steps(), 0);
  EXPECT_GT(exact, 0);
  EXPECT_LE(worst_eager, 2e-2);
  EXPECT_LE(worst_cpu, 3e-2);
}

}  // namespace
}  // namespace nc::testing

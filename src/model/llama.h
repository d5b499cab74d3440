// One decoder for the Llama family: Llama 2/3, SmolLM2, Qwen2 (q/k/v bias), Qwen3 (q/k RMSNorm).
// The model owns its weights on the backend's device and a grow-only activation workspace;
// the KV cache is the caller's (the engine owns the page pool).
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "kv/paged_kv.h"
#include "model/host_tensor.h"
#include "model/model_config.h"

namespace nc {

// The KV pages of every layer, on the backend's device.
struct KVCache {
  KVCacheShape shape;
  std::vector<Tensor> layers;  // each [num_pages, 2, page_size, Hkv, D] (NHD) or HND
};

// One step's input: the new tokens of every scheduled request, concatenated.
struct ForwardInput {
  std::vector<int32_t> token_ids;   // [T]
  std::vector<int32_t> positions;   // [T], absolute position of each token in its sequence
  AttentionStep attention;          // num_tokens == T; see kv/paged_kv.h
  std::vector<int32_t> logit_rows;  // rows of [0, T) whose logits are returned, in this order
};

class LlamaModel {
 public:
  // Uploads the weights (checked with check_weights) to the backend.
  LlamaModel(const ModelConfig& config, const WeightMap& weights, Backend& backend);

  const ModelConfig& config() const { return cfg_; }
  Backend& backend() { return backend_; }

  KVCache make_kv_cache(int num_pages, int page_size, KVLayout layout = KVLayout::NHD);
  // Bytes of one page across all layers (K and V) in the backend's dtype.
  int64_t kv_bytes_per_page(int page_size) const;

  // Runs one step: appends the new tokens' K/V to their pages and returns float32 logits on the
  // host, row-major [logit_rows.size(), vocab_size]. Throws nc::Error on inconsistent input
  // (token ids outside the vocabulary, positions past max_position, bad page tables).
  std::vector<float> forward(const ForwardInput& in, KVCache& kv);

 private:
  struct Layer {
    Tensor input_norm, post_norm;
    Tensor q, k, v, q_bias, k_bias, v_bias;  // biases undefined unless attention_bias
    Tensor q_norm, k_norm;                   // undefined unless qk_norm
    Tensor o_proj, o_bias;                   // o_bias undefined unless o_proj_bias
    Tensor gate_up;                          // fused [2 I, H]
    Tensor down;
  };
  struct Workspace {
    int64_t capacity = 0;
    Tensor ids, positions, rows, hidden, residual, q, k, v, attn_out, gate_up, act, last_hidden,
        logits;
  };

  void validate_input(const ForwardInput& in, const KVCache& kv) const;
  void ensure_workspace(int64_t num_tokens, int64_t num_rows);
  void attention_block(const Layer& layer, const AttentionPlan& plan, Tensor kv_pages, int64_t T);
  void mlp_block(const Layer& layer, int64_t T);

  ModelConfig cfg_;
  Backend& backend_;
  Tensor embed_, final_norm_, lm_head_, cos_sin_;
  std::vector<Layer> layers_;
  Workspace ws_;
};

// cos/sin table [max_pos, head_dim] (cos in the first half, sin in the second), float32, computed
// as Hugging Face does (inverse frequencies in float32, Llama-3 scaling applied to them).
HostTensor rope_cos_sin_table(const ModelConfig& cfg, int64_t max_pos);

}  // namespace nc

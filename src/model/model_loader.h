// Loads a model (config + weights with Hugging Face names, float32 or as a GGUF file stores
// them) from a GGUF file or a Hugging Face checkpoint folder (config.json + model.safetensors or
// sharded with model.safetensors.index.json).
#pragma once
#include <string>
#include <vector>

#include "core/host_tensor.h"
#include "model/model_config.h"

namespace nc {

struct LoadedModel {
  ModelConfig config;
  // HF names; q/k projections in HF row order (GGUF's permutation undone). Phi-3's q/k/v and
  // gate/up stay fused (self_attn.qkv_proj, mlp.gate_up_proj) as its checkpoints store them.
  // Gemma's norm weights hold 1 + w (the offset its RMSNorm applies; ModelConfig::
  // norm_weight_offset), whichever format they came from. From a GGUF file,
  // matrices of F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and Q6_K are kept raw (HostTensor::raw,
  // formats/gguf.h dequantized() gives their values); everything else is float32.
  WeightMap weights;
  // With tied embeddings there is no lm_head.weight: the decoder uses model.embed_tokens.weight.
};

// How weights are obtained: from the checkpoint (Auto), or seeded random values made from the
// config alone (Dummy, as vLLM's "dummy" load format: for benchmarks at real shapes without the
// weights; see RandomWeights in model/llama.h).
enum class LoadFormat { Auto, Dummy };
// "auto" | "dummy"; throws nc::Error for anything else.
LoadFormat parse_load_format(const std::string& name);

// The config alone: a config.json file (any name ending in .json, e.g. configs/qwen3-0.6b.json),
// a Hugging Face folder holding config.json, or a .gguf file (its metadata). Validated; throws
// nc::Error naming the file and the problem.
ModelConfig load_model_config(const std::string& path);

// `path` is a .gguf file or a folder. Throws nc::Error for unknown formats, unknown
// architectures, missing tensors and shape mismatches, naming what is wrong.
LoadedModel load_model(const std::string& path);

// Checks that every tensor the decoder needs is present with the right shape (validating the
// config first); the error names the tensor, the expected and the actual shape.
void check_weights(const ModelConfig& cfg, const WeightMap& w);

// The tensors the decoder needs, by HF name, with their shapes (lm_head only when not tied).
struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<WeightSpec> expected_weights(const ModelConfig& cfg);

// GGUF tensor name -> HF name ("blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight")
// for a file of llama.cpp architecture `arch` (Gemma's and Phi-3's blocks name some tensors
// their own way); empty when the tensor is not one the decoder uses (rope_freqs.weight,
// rope_factors_long.weight, ...: those went into the config).
std::string gguf_to_hf_name(const std::string& gguf_name, const std::string& arch = "llama");

// llama.cpp's converter interleaves the two rotary halves of each head of a Llama q/k projection
// (rows of a head go from [2, head_dim/2] to [head_dim/2, 2] order). This undoes it in place, for
// a weight [n_head * head_dim, in] or a bias [n_head * head_dim], float32 or raw (whole rows
// move); n_head is the kv head count for k. Qwen2/Qwen3 files are not permuted.
void unpermute_gguf_qk(HostTensor& t, int64_t n_head, const std::string& name);

}  // namespace nc

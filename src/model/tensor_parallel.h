// Tensor parallelism's split of a dense Llama-family model (issue #21; docs/models.md, "Tensor
// parallelism"), Megatron style: each of `size` ranks holds 1/size of the attention heads and of
// the MLP's intermediate features, and the two projections that leave a block (o_proj, down_proj)
// sum their partial outputs across ranks (Communicator::all_reduce_sum, two per layer).
//
//   ModelConfig cfg = shard_config(full, rank, size);
//   WeightMap w = shard_weights(full, weights, rank, size);
//   LlamaModel model(cfg, w, backend);
//   model.set_tensor_parallel(comm);  // rank's end of the group
//
// Contract:
//   - shard_config: num_heads / size query heads a rank, intermediate_size / size features;
//     num_kv_heads / size KV heads where size divides them, else (fewer KV heads than ranks, size
//     a multiple of them) one KV head a rank, replicated across the ranks whose query heads share
//     it; where size divides the vocabulary, vocab_size / size rows of the embeddings and the LM
//     head from rank * vocab_size / size (ModelConfig::vocab_first, vocab_count: the embedding
//     lookups are summed across ranks, the logits gathered), else the whole vocabulary on every
//     rank. Everything else as in `full`. Unsupported nc::Error, naming the numbers, where the
//     heads, the KV heads or the intermediate size do not split, or for MoE and MLA layers (not
//     split yet).
//   - shard_weights: rank's slice of each tensor by Hugging Face name: q_proj/k_proj/v_proj (and
//     their biases) by rows, the rank's heads; o_proj by columns, the same heads; gate_proj and
//     up_proj by rows, down_proj by columns, the rank's features; a checkpoint's fused qkv_proj
//     and gate_up_proj (Phi-3) part by part. A bias of o_proj or down_proj stays on rank 0 (the
//     others get zeros: the all-reduce adds it once). The embeddings and the LM head (the
//     embeddings' rows where they are tied) are split by vocabulary rows as shard_config says,
//     the embeddings with one more, zero row. Every other tensor (norms) is replicated. A row slice
//     of a block-quantised (GGUF) matrix keeps its raw rows, and so does a column slice on whole
//     blocks; other column slices become float32.
//   - With these, rank r's model computes exactly the full model's per-head and per-feature
//     values for its share; the all-reduce then gives every rank the full block output, summed in
//     rank order (the same bits on every rank), equal to the unsplit model's up to float32
//     summation order with float activations. With the CPU's default int8 activations over
//     block-quantised weights each rank quantises its own slice, and those roundings compound over
//     the layers: SmolLM2 Q4_1 at 3 ranks is 2.6% (relative L2 of the logits) from the unsplit
//     model, which itself is 2-5% from float32 (docs/models.md).
//   - FP8 weights and FP8 checkpoints (their scales) are refused by name (not split yet).
#pragma once
#include "core/host_tensor.h"
#include "model/model_config.h"

namespace nc {

ModelConfig shard_config(const ModelConfig& full, int rank, int size);
WeightMap shard_weights(const ModelConfig& full, const WeightMap& weights, int rank, int size);

// The range of KV heads rank `rank` holds, [first, first + count).
struct KvHeadRange {
  int64_t first = 0, count = 0;
};
KvHeadRange kv_heads_of_rank(const ModelConfig& full, int rank, int size);

}  // namespace nc

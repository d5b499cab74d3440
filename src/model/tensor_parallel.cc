// Tensor parallelism's split of a dense model (model/tensor_parallel.h).
#include "model/tensor_parallel.h"

#include <cstring>

#include "core/error.h"
#include "formats/gguf.h"

namespace nc {
namespace {

// Rows [first, first + count) of a [R, ...] tensor (raw rows stay raw).
HostTensor slice_rows(const HostTensor& t, int64_t first, int64_t count) {
  const int64_t rows = t.shape.at(0);
  NC_CHECK(first >= 0 && count >= 0 && first + count <= rows,
           "tensor parallel: rows [{}, {}) of a tensor of {} rows", first, first + count, rows);
  HostTensor out{t.shape, {}, t.dtype};
  out.shape[0] = count;
  if (t.is_raw()) {
    const size_t row_bytes = t.raw.size() / size_t(rows);
    out.raw.assign(t.raw.begin() + int64_t(first * row_bytes),
                   t.raw.begin() + int64_t((first + count) * row_bytes));
  } else {
    const int64_t per_row = t.numel() / rows;
    out.data.assign(t.data.begin() + first * per_row, t.data.begin() + (first + count) * per_row);
  }
  return out;
}

// Columns [first, first + count) of a [R, C] matrix: raw bytes where the range falls on whole
// blocks of a stored type (a GGUF's Q4_1 rows keep their format, so the rank's product runs
// the same kernels as the whole model's), else float32.
HostTensor slice_cols(const HostTensor& t, int64_t first, int64_t count) {
  NC_CHECK(t.shape.size() == 2, "tensor parallel: a column slice of a {}-d tensor", t.shape.size());
  const int64_t block = t.is_raw() ? dtype_block_elems(t.dtype) : 1;
  if (t.is_raw() && first % block == 0 && count % block == 0 && first + count <= t.shape[1]) {
    const int64_t rows = t.shape[0];
    const size_t row_bytes = dtype_bytes(t.dtype, t.shape[1]);
    const size_t skip = dtype_bytes(t.dtype, first), take = dtype_bytes(t.dtype, count);
    HostTensor out{{rows, count}, {}, t.dtype};
    out.raw.resize(size_t(rows) * take);
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(out.raw.data() + size_t(r) * take, t.raw.data() + size_t(r) * row_bytes + skip,
                  take);
    return out;
  }
  const HostTensor f = t.is_raw() ? dequantized(t) : t;
  const int64_t rows = f.shape[0], cols = f.shape[1];
  NC_CHECK(first >= 0 && count >= 0 && first + count <= cols,
           "tensor parallel: columns [{}, {}) of a tensor of {} columns", first, first + count,
           cols);
  HostTensor out{{rows, count}, std::vector<float>(size_t(rows * count))};
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out.data.data() + r * count, f.data.data() + r * cols + first,
                size_t(count) * sizeof(float));
  return out;
}

// The parts' rows stacked (all raw of one dtype, or all float32 after dequantising).
HostTensor stack(std::vector<HostTensor> parts) {
  const bool raw = parts[0].is_raw();
  bool same = true;
  for (const HostTensor& p : parts) same = same && p.dtype == parts[0].dtype;
  HostTensor out{parts[0].shape, {}, same ? parts[0].dtype : DType::F32};
  out.shape[0] = 0;
  for (HostTensor& p : parts) {
    out.shape[0] += p.shape[0];
    if (same && raw) {
      out.raw.insert(out.raw.end(), p.raw.begin(), p.raw.end());
    } else {
      const HostTensor f = p.is_raw() ? dequantized(p) : std::move(p);
      out.data.insert(out.data.end(), f.data.begin(), f.data.end());
    }
  }
  return out;
}

struct Split {
  int64_t D, q_first, q_count, kv_first, kv_count, Hq, Hk, I, i_first, i_count;
};

// Rank's part of the tensor called `name` (the rules of tensor_parallel.h).
HostTensor shard_one(const std::string& name, const HostTensor& t, const Split& s, int rank) {
  const auto ends = [&](const char* suffix) { return name.ends_with(suffix); };
  const int64_t D = s.D;
  if (ends(".q_proj.weight") || ends(".q_proj.bias"))
    return slice_rows(t, s.q_first * D, s.q_count * D);
  if (ends(".k_proj.weight") || ends(".k_proj.bias") || ends(".v_proj.weight") ||
      ends(".v_proj.bias"))
    return slice_rows(t, s.kv_first * D, s.kv_count * D);
  if (ends(".qkv_proj.weight") || ends(".qkv_proj.bias"))
    return stack({slice_rows(t, s.q_first * D, s.q_count * D),
                  slice_rows(t, (s.Hq + s.kv_first) * D, s.kv_count * D),
                  slice_rows(t, (s.Hq + s.Hk + s.kv_first) * D, s.kv_count * D)});
  if (ends(".o_proj.weight")) return slice_cols(t, s.q_first * D, s.q_count * D);
  if (ends(".gate_proj.weight") || ends(".up_proj.weight") || ends(".gate_proj.bias") ||
      ends(".up_proj.bias"))
    return slice_rows(t, s.i_first, s.i_count);
  if (ends(".gate_up_proj.weight"))
    return stack({slice_rows(t, s.i_first, s.i_count), slice_rows(t, s.I + s.i_first, s.i_count)});
  if (ends(".down_proj.weight")) return slice_cols(t, s.i_first, s.i_count);
  if (ends(".o_proj.bias") || ends(".down_proj.bias")) {  // added once, by rank 0
    if (rank == 0) return t;
    HostTensor zeros{t.shape, std::vector<float>(size_t(t.numel()), 0.0f)};
    return zeros;
  }
  return t;
}

// The rank's vocabulary rows of the embeddings (with the zero row its lookups of other ranks'
// ids read: llama_load.cc) and of the LM head (the embeddings' rows where they are tied).
void add_vocab_shard(const WeightMap& weights, const ModelConfig& c, WeightMap& out) {
  auto it = weights.find("model.embed_tokens.weight");
  NC_CHECK_AS(ErrorKind::InvalidArgument, it != weights.end(),
              "model: missing tensor 'model.embed_tokens.weight'");
  HostTensor embed = slice_rows(it->second, c.vocab_first, c.vocab_count);
  auto head = weights.find("lm_head.weight");
  out.emplace("lm_head.weight", head != weights.end()
                                    ? slice_rows(head->second, c.vocab_first, c.vocab_count)
                                    : embed);
  const int64_t H = embed.shape.at(1);
  if (embed.is_raw()) {
    embed.raw.resize(embed.raw.size() + dtype_bytes(embed.dtype, H), 0);  // zero blocks: zeros
  } else {
    embed.data.resize(embed.data.size() + size_t(H), 0.0f);
  }
  embed.shape[0] += 1;
  out.emplace("model.embed_tokens.weight", std::move(embed));
}

}  // namespace

KvHeadRange kv_heads_of_rank(const ModelConfig& full, int rank, int size) {
  const int64_t Hk = full.num_kv_heads;
  if (Hk % size == 0) return {rank * (Hk / size), Hk / size};
  const int64_t q_per_rank = full.num_heads / size, group = full.num_heads / Hk;
  return {(rank * q_per_rank) / group, 1};
}

ModelConfig shard_config(const ModelConfig& full, int rank, int size) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, size >= 1, "tensor parallel size {} (must be >= 1)",
              size);
  NC_CHECK_AS(ErrorKind::InvalidArgument, rank >= 0 && rank < size,
              "tensor parallel: rank {} outside [0, {})", rank, size);
  NC_CHECK_AS(ErrorKind::Unsupported, !full.moe.enabled() && !full.mla.enabled(),
              "tensor parallel: {} layers are not split yet (tensor parallel size {})",
              full.moe.enabled() ? "mixture-of-experts" : "MLA", size);
  NC_CHECK_AS(ErrorKind::Unsupported, full.quantization != "fp8",
              "tensor parallel: FP8 weights are not split yet (tensor parallel size {})", size);
  NC_CHECK_AS(ErrorKind::Unsupported, full.num_heads % size == 0,
              "tensor parallel size {} does not divide the model's {} attention heads", size,
              full.num_heads);
  NC_CHECK_AS(ErrorKind::Unsupported,
              full.num_kv_heads % size == 0 || size % full.num_kv_heads == 0,
              "tensor parallel size {} and the model's {} KV heads: one must divide the other",
              size, full.num_kv_heads);
  NC_CHECK_AS(ErrorKind::Unsupported, full.intermediate_size % size == 0,
              "tensor parallel size {} does not divide the model's intermediate size {}", size,
              full.intermediate_size);
  ModelConfig c = full;
  c.num_heads = full.num_heads / size;
  c.num_kv_heads = kv_heads_of_rank(full, 0, size).count;
  c.intermediate_size = full.intermediate_size / size;
  if (size > 1 && full.vocab_size % size == 0) {  // else the vocabulary stays whole on every rank
    c.vocab_count = full.vocab_size / size;
    c.vocab_first = rank * c.vocab_count;
  }
  return c;
}

WeightMap shard_weights(const ModelConfig& full, const WeightMap& weights, int rank, int size) {
  const ModelConfig c = shard_config(full, rank, size);  // checks that the model splits
  const KvHeadRange kv = kv_heads_of_rank(full, rank, size);
  const Split s{full.head_dim,
                rank * c.num_heads,
                c.num_heads,
                kv.first,
                kv.count,
                full.num_heads,
                full.num_kv_heads,
                full.intermediate_size,
                rank * c.intermediate_size,
                c.intermediate_size};
  WeightMap out;
  for (const auto& [name, t] : weights) {
    NC_CHECK_AS(ErrorKind::Unsupported,
                !name.ends_with("weight_scale") && !name.ends_with("weight_scale_inv") &&
                    !name.ends_with("input_scale"),
                "tensor parallel: FP8 checkpoints are not split yet ('{}')", name);
    if (c.vocab_count > 0 && (name == "model.embed_tokens.weight" || name == "lm_head.weight"))
      continue;
    out.emplace(name, shard_one(name, t, s, rank));
  }
  if (c.vocab_count > 0) add_vocab_shard(weights, c, out);
  return out;
}

}  // namespace nc

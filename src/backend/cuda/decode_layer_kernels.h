// One whole decoder layer of a one-request decode step in one persistent kernel (decode_layer.cu;
// issue #16's batch-1 latency). Plain host declarations.
//
// A batch-1 decode step of a small model is bound by the launch and tail of its ~9 kernels a
// layer, not by its bytes: each kernel reads a few MB in about a microsecond and then waits for
// the next to start. This kernel runs the layer on one block per multiprocessor, its stages
// separated by grid-wide barriers (counters in `counters`), and keeps the memory busy across
// them. (It can also ask the L2 for each block's slice of the next stage's weights and its share
// of the K/V before it waits: measured slower, off unless flags say so.) What a stage
// reads that no stage of the launch writes (the two norms' weights, the token's rope row, the q/k
// norms and the first 64 tokens of each attention block's K/V) is copied into shared memory at
// the launch's start (cp.async), and each block's first weight chunks of a stage are loaded into
// registers before its barrier, so that after a barrier a stage waits only for what the stage
// before wrote.
//
//   S1  every block: x = rmsnorm(residual (+ hidden)) * input_norm; its rows of qkv = W_qkv x + b
//   S2  one block per (kv head, chunk of the context): q/k RMSNorm (Qwen3) and rope of the group's
//       heads, attention over the chunk (the new token's k/v from S1, written to its page slot by
//       chunk 0); the last block of a kv head to finish merges the chunks into attn
//   S3  every block: its rows of o = W_o attn + b; residual = bf16(residual + hidden) and
//       hidden = o for those rows
//   S4  every block: x = rmsnorm(residual + hidden) * post_norm; its gate/up row pairs, act =
//       bf16(silu(bf16 g) * bf16 u)
//   S5  every block: its rows of d = W_down act; residual = bf16(residual + hidden), hidden = d
//
// The result is the unfused layer's (the same bf16 roundings at the same places; sums in another
// order): residual holds the stream after the attention's add, hidden the MLP's output, as
// LlamaModel's layer loop leaves them. Launched with programmatic dependent launch where pdl.h
// allows (it waits before reading activations and lets the next kernel start after its last
// barrier). The grid must be co-resident: decode_layer_blocks() blocks, one per multiprocessor.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/fused_kernels.h"

namespace nc::cuda {

struct DecodeLayerParams {
  // Activations, bf16 rows of one token: hidden [H] (in: the previous layer's MLP output when
  // add_hidden, else unused; out: this layer's), residual [H], scratch qkv [(Hq + 2 Hk) D],
  // attn [Hq D], act [I].
  void* hidden = nullptr;
  void* residual = nullptr;
  bool add_hidden = true;
  void* qkv = nullptr;
  void* attn = nullptr;
  void* act = nullptr;
  // Weights, bf16 row-major [out, in]; the biases, q_norm and k_norm may be null.
  const void* input_norm = nullptr;
  const void* qkv_w = nullptr;
  const void* qkv_bias = nullptr;
  const void* q_norm = nullptr;
  const void* k_norm = nullptr;
  const void* o_w = nullptr;
  const void* o_bias = nullptr;
  const void* post_norm = nullptr;
  const void* gate_up_w = nullptr;  // [2 I, H]: gate rows, then up rows
  const void* down_w = nullptr;
  float eps = 1e-6f;
  int hidden_size = 0, num_qo_heads = 0, num_kv_heads = 0, head_dim = 0, intermediate = 0;
  // Rope (rotate-half): the token's position and the table [max_pos, D] (cos, then sin).
  const int32_t* rope_position = nullptr;
  const float* cos_sin = nullptr;
  float sm_scale = 1.0f;
  // The K/V pages and the one entry's CSR arrays (fused_kernels.h); last_page_len[0] completes
  // the entry's length.
  KvAppendTarget kv;
  const int32_t* last_page_len = nullptr;
  // decode_layer_scratch_bytes() of zeroed device memory, kept for the kernel (its counters
  // return to zero at the end of every launch).
  void* scratch = nullptr;
  // Null, or a trace: [0] launches so far, then per launch (up to kDecodeLayerTraceLaunches)
  // kDecodeLayerStamps %globaltimer values of block 0 (ns): start, after the PDL wait, then
  // before and after each of the four barriers, and the end.
  unsigned long long* trace = nullptr;
  // kDecodeLayerNoPrefetch: no L2 prefetches of the stages' weights and the K/V (what the host
  // sets: measured faster on every shape since the stages' inputs are staged, stop 18); 0: one
  // prefetch a 128-byte line (NC_DECODE_LAYER_FLAGS=0, for A/B runs).
  int flags = 0;
};

inline constexpr int kDecodeLayerStamps = 11;
// DecodeLayerParams::flags bit: no L2 prefetches (what the host sets: cuda_decode_layer.cc).
inline constexpr int kDecodeLayerNoPrefetch = 4;
// The largest hidden size (the norms hold their rows in registers: 2 x 16 bytes a thread).
inline constexpr int kDecodeLayerMaxHidden = 8192;
// and at most this many of its rows a block (H <= this x decode_layer_blocks()).
inline constexpr int kDecodeLayerMaxRowsPerBlock = 64;
inline constexpr int kDecodeLayerTraceLaunches = 4096;

// The grid (one block per multiprocessor of the current device).
int decode_layer_blocks();
// Scratch bytes for `blocks` blocks (counters and the attention chunks' partial states).
size_t decode_layer_scratch_bytes(int blocks);
// Dynamic shared memory the launch needs for these sizes; the kernel takes up to
// decode_layer_max_smem().
size_t decode_layer_smem_bytes(int hidden, int q_width, int intermediate, int group, int head_dim);
size_t decode_layer_max_smem();
// head_dim 64 or 128, group (Hq / Hk) 1, 2, 4 or 8; shapes as above (multiples of 8); nothing
// else is checked on the device.
bool decode_layer_supported(int head_dim, int group);
void decode_layer_bf16(const DecodeLayerParams& p, cudaStream_t stream);

}  // namespace nc::cuda

// The whole-layer decode kernel of decode_layer_kernels.h: one block of kThreads per
// multiprocessor, five stages, four grid barriers. Each block owns a contiguous slice of every
// projection's rows (so that its slice of a weight is one contiguous byte range: one L2 prefetch)
// and reads its inputs (x after the norm, attn, act: a few KB) into shared memory as bf16; the
// pieces are in decode_layer_block.cuh (norm, projections, barriers, prefetches) and
// decode_layer_attention.cuh (the attention stage).
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "backend/cuda/act.cuh"
#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/decode_layer_attention.cuh"
#include "backend/cuda/decode_layer_block.cuh"
#include "backend/cuda/decode_layer_kernels.h"
#include "backend/cuda/gemv_common.cuh"
#include "backend/cuda/pdl.cuh"

namespace nc::cuda {
namespace {

using namespace decode_layer;
// counters: [0] the grid barrier, [1] blocks finished, [2 + h] chunks of kv head h finished.
constexpr int kCounterWords = 64, kMaxKvHeads = kCounterWords - 2;
constexpr size_t kMaxSmem = 200 * 1024;
constexpr int kStamps = kDecodeLayerStamps;
constexpr unsigned long long kTraceLaunches = kDecodeLayerTraceLaunches;
constexpr int kMaxRowsPerBlock = kDecodeLayerMaxRowsPerBlock;
// block_sum's scratch, rows_dot's split sums and the kept rows (keep_r, keep_o), before the
// stage's own
constexpr size_t kRedBytes = (2 * kWarps + 2 * kMaxRowsPerBlock) * sizeof(float);

// Shared memory: kRedBytes, then the stages' body (S1/S3/S4/S5's input as bf16, or S2's
// AttnSmem), then what is staged at the start (StagedSmem, the input and post-attention norms).
template <int D, int G>
__host__ __device__ constexpr size_t body_bytes(int hidden, int q_width, int intermediate) {
  const int widest = hidden > q_width ? (hidden > intermediate ? hidden : intermediate)
                                      : (q_width > intermediate ? q_width : intermediate);
  const size_t xs = size_t(widest) * sizeof(bf16), attn = sizeof(AttnSmem<D, G>);
  return ((xs > attn ? xs : attn) + 15) / 16 * 16;
}

template <int D, int G>
__global__ void __launch_bounds__(kThreads, 1) decode_layer_kernel(const DecodeLayerParams p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* red = reinterpret_cast<float*>(smem_raw);
  float* split_sums = red + kWarps;
  // This block's rows of the residual stream between stages: r1 (the stream after the previous
  // layer's MLP add) and o, so that S3 and S5 write their rows without reading them back.
  float* keep_r = split_sums + kWarps;
  float* keep_o = keep_r + kMaxRowsPerBlock;
  unsigned char* body = smem_raw + kRedBytes;
  bf16* xs = reinterpret_cast<bf16*>(body);
  auto& attn_sm = *reinterpret_cast<AttnSmem<D, G>*>(body);
  unsigned char* staged_raw =
      body + body_bytes<D, G>(p.hidden_size, p.num_qo_heads * D, p.intermediate);
  auto& staged = *reinterpret_cast<StagedSmem<D>*>(staged_raw);
  bf16* input_norm = reinterpret_cast<bf16*>(staged_raw + sizeof(StagedSmem<D>));
  bf16* post_norm = input_norm + p.hidden_size;
  unsigned* counters = static_cast<unsigned*>(p.scratch);
  float* partials = reinterpret_cast<float*>(static_cast<char*>(p.scratch) + kCounterWords * 4);
  const int H = p.hidden_size, hq = p.num_qo_heads, hk = p.num_kv_heads, I = p.intermediate;
  const int qkv_rows = (hq + 2 * hk) * D, q_width = hq * D;
  const int chunks = attention_chunks(p, hk);
  const bool attends = int(blockIdx.x) < hk * chunks;
  const int h = attends ? int(blockIdx.x) / chunks : 0, chunk = int(blockIdx.x) % chunks;
  const Rows qkv_r = block_rows(qkv_rows), h_r = block_rows(H), i_r = block_rows(I);
  const bf16* qkv_w = static_cast<const bf16*>(p.qkv_w);
  const bf16* o_w = static_cast<const bf16*>(p.o_w);
  const bf16* gu_w = static_cast<const bf16*>(p.gate_up_w);
  const bf16* down_w = static_cast<const bf16*>(p.down_w);
  bf16* hidden = static_cast<bf16*>(p.hidden);
  bf16* residual = static_cast<bf16*>(p.residual);
  // Block 0's clock at each stage boundary (decode_layer_kernels.h: trace).
  // Launches are serialised (each waits for the one before): one writer of the trace at a time.
  const bool tracing = p.trace != nullptr && blockIdx.x == 0 && threadIdx.x == 0;
  const unsigned long long started = tracing ? now_ns() : 0;
  unsigned long long* trace = nullptr;
  auto mark = [&](int i) {
    if (trace != nullptr) trace[i] = now_ns();
  };
  // Before the wait: only weights, the plan's arrays and the position (uploaded before the step's
  // kernels), and K/V written by earlier launches.
  const Prefetch how = p.flags & kDecodeLayerNoPrefetch ? Prefetch::Off : Prefetch::Lines;
  // Two groups of copies into shared memory: S1's norm weights, then the rest (S2's rope row,
  // norms and K/V; S4's norm weights).
  stage_bytes(input_norm, p.input_norm, H * 2);
  cp_async_commit();
  stage_bytes(post_norm, p.post_norm, H * 2);
  AttnTask task;
  if (attends) task = stage_attention<D>(p, h, chunk, chunks, staged);
  cp_async_commit();
  Preload pl;
  preload_rows(qkv_w, qkv_r, H, pl);
  prefetch_rows(qkv_w, qkv_r, H, how);
  if (attends) prefetch_kv<D>(p, h, task, how);
  prefetch_rows(o_w, h_r, q_width, how);
  pdl_wait();
  cp_async_wait<1>();
  __syncthreads();
  if (tracing && p.trace[0] < kTraceLaunches) {
    trace = p.trace + 1 + p.trace[0] * kStamps;
    trace[0] = started;
  }
  mark(1);

  // S1: the input norm and this block's qkv rows; r1 of this block's rows kept.
  for (int r = h_r.first + int(threadIdx.x); r < h_r.last; r += kThreads)
    keep_r[r - h_r.first] =
        p.add_hidden ? round_bf16(bf(residual, r) + bf(hidden, r)) : bf(residual, r);
  norm_to_smem(residual, p.add_hidden ? hidden : nullptr, input_norm, H, p.eps, xs, red);
  const bf16* qkv_bias = static_cast<const bf16*>(p.qkv_bias);
  bf16* qkv = static_cast<bf16*>(p.qkv);
  rows_dot(qkv_w, xs, qkv_r, H, pl, split_sums, [&](int r, float s) {
    qkv[r] = __float2bfloat16(qkv_bias ? s + __bfloat162float(qkv_bias[r]) : s);
  });
  prefetch_rows(gu_w, i_r, H, how);
  prefetch_rows(gu_w + int64_t(I) * H, i_r, H, how);
  mark(2);
  grid_barrier(counters, 1);
  cp_async_wait<0>();
  __syncthreads();
  mark(3);

  // S2: attention.
  if (attends) attention_stage<D, G>(p, h, chunks, task, staged, partials, counters + 2, attn_sm);
  prefetch_rows(down_w, h_r, I, how);
  preload_rows(o_w, h_r, q_width, pl);
  mark(4);
  grid_barrier(counters, 2);
  mark(5);

  // S3: o projection; the attention's residual add for this block's rows.
  copy_to_smem(static_cast<const bf16*>(p.attn), q_width, xs);
  const bf16* o_bias = static_cast<const bf16*>(p.o_bias);
  rows_dot(o_w, xs, h_r, q_width, pl, split_sums, [&](int r, float s) {
    const bf16 o = __float2bfloat16(o_bias ? s + __bfloat162float(o_bias[r]) : s);
    if (p.add_hidden) residual[r] = __float2bfloat16(keep_r[r - h_r.first]);
    hidden[r] = o;
    keep_o[r - h_r.first] = __bfloat162float(o);
  });
  preload_pair(gu_w, i_r, I, H, pl);
  mark(6);
  grid_barrier(counters, 3);
  mark(7);

  // S4: the post-attention norm, gate and up, SiLU.
  norm_to_smem(residual, hidden, post_norm, H, p.eps, xs, red);
  bf16* act = static_cast<bf16*>(p.act);
  pair_dot(gu_w, xs, i_r, I, H, pl, [&](int i, float g, float u) {
    act[i] = __float2bfloat16(silu(round_bf16(g)) * round_bf16(u));
  });
  preload_rows(down_w, h_r, I, pl);
  mark(8);
  grid_barrier(counters, 4);
  mark(9);
  pdl_trigger();  // every block is past the last barrier: the next kernel may take free room

  // S5: down projection; the MLP's input add for this block's rows.
  copy_to_smem(act, I, xs);
  rows_dot(down_w, xs, h_r, I, pl, split_sums, [&](int r, float s) {
    residual[r] = __float2bfloat16(keep_r[r - h_r.first] + keep_o[r - h_r.first]);
    hidden[r] = __float2bfloat16(s);
  });

  // The counters back to zero once every block is done with them.
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    if (atomicAdd(counters + 1, 1u) == gridDim.x - 1) {
      counters[0] = 0;
      for (int i = 0; i < hk; ++i) counters[2 + i] = 0;
      counters[1] = 0;
      __threadfence();
    }
  }
  mark(10);
  if (tracing) ++p.trace[0];
}

template <int D, int G>
size_t smem_bytes(int hidden, int q_width, int intermediate) {
  return kRedBytes + body_bytes<D, G>(hidden, q_width, intermediate) + sizeof(StagedSmem<D>) +
         2 * size_t(hidden) * sizeof(bf16);
}

template <int D>
size_t smem_for_group(int hidden, int q_width, int intermediate, int group) {
  switch (group) {
    case 1:
      return smem_bytes<D, 1>(hidden, q_width, intermediate);
    case 2:
      return smem_bytes<D, 2>(hidden, q_width, intermediate);
    case 4:
      return smem_bytes<D, 4>(hidden, q_width, intermediate);
    default:
      return smem_bytes<D, 8>(hidden, q_width, intermediate);
  }
}

template <int D, int G>
void launch(const DecodeLayerParams& p, cudaStream_t stream) {
  const size_t smem = smem_bytes<D, G>(p.hidden_size, p.num_qo_heads * D, p.intermediate);
  static const bool attr_set = [] {
    check_cuda(cudaFuncSetAttribute(decode_layer_kernel<D, G>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, int(kMaxSmem)),
               "decode_layer (shared memory)");
    return true;
  }();
  (void)attr_set;
  launch_maybe_pdl("decode_layer", decode_layer_kernel<D, G>, dim3(unsigned(decode_layer_blocks())),
                   dim3(kThreads), smem, stream, p);
}

template <int D>
void dispatch_group(const DecodeLayerParams& p, int group, cudaStream_t stream) {
  switch (group) {
    case 1:
      return launch<D, 1>(p, stream);
    case 2:
      return launch<D, 2>(p, stream);
    case 4:
      return launch<D, 4>(p, stream);
    default:
      return launch<D, 8>(p, stream);
  }
}

}  // namespace

int decode_layer_blocks() {
  return gemv_sm_count();
}

size_t decode_layer_scratch_bytes(int blocks) {
  return kCounterWords * 4 + size_t(blocks) * kPartFloats<128, 8> * sizeof(float);
}

size_t decode_layer_smem_bytes(int hidden, int q_width, int intermediate, int group, int head_dim) {
  return head_dim == 64 ? smem_for_group<64>(hidden, q_width, intermediate, group)
                        : smem_for_group<128>(hidden, q_width, intermediate, group);
}

size_t decode_layer_max_smem() {
  return kMaxSmem;
}

bool decode_layer_supported(int head_dim, int group) {
  return (head_dim == 64 || head_dim == 128) &&
         (group == 1 || group == 2 || group == 4 || group == 8);
}

void decode_layer_bf16(const DecodeLayerParams& p, cudaStream_t stream) {
  const int group = p.num_kv_heads > 0 ? p.num_qo_heads / p.num_kv_heads : 0;
  if (!decode_layer_supported(p.head_dim, group) || p.num_kv_heads > kMaxKvHeads ||
      decode_layer_blocks() < p.num_kv_heads)
    throw std::runtime_error("decode_layer: unsupported head_dim " + std::to_string(p.head_dim) +
                             " / group " + std::to_string(group) + " / kv heads " +
                             std::to_string(p.num_kv_heads));
  if (p.head_dim == 64) return dispatch_group<64>(p, group, stream);
  dispatch_group<128>(p, group, stream);
}

}  // namespace nc::cuda

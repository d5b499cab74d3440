// The attention stage of the whole-layer decode kernel (decode_layer.cu): one block per (kv head,
// chunk of the context) takes the group's q heads through their norm and rope, attends over its
// chunk with each warp's online softmax, and leaves its partial state; the last block of a kv
// head merges the chunks into attn. Device code only; included by decode_layer.cu alone.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/decode_layer_block.cuh"
#include "backend/cuda/decode_layer_kernels.h"

namespace nc::cuda::decode_layer {

// K/V of the context asked of the L2 at the start only up to this many bytes (a long context
// would push the weights out of the cache before they are read).
constexpr int64_t kMaxKvPrefetch = int64_t(8) << 20;

// P (2 or 4) consecutive bf16 values as floats, in one load.
template <int P>
__device__ __forceinline__ void load_bf16(const bf16* p, float (&x)[P]) {
  static_assert(P == 2 || P == 4, "2 or 4 values");
  const __nv_bfloat162* h;
  uint2 v4;
  uint32_t v2;
  if constexpr (P == 4) {
    v4 = *reinterpret_cast<const uint2*>(p);
    h = reinterpret_cast<const __nv_bfloat162*>(&v4);
  } else {
    v2 = *reinterpret_cast<const uint32_t*>(p);
    h = reinterpret_cast<const __nv_bfloat162*>(&v2);
  }
#pragma unroll
  for (int i = 0; i < P / 2; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    x[2 * i] = f.x;
    x[2 * i + 1] = f.y;
  }
}

// Where position t of the entry lives in the pages: its k row for kv head h (v: + half).
template <int D>
__device__ __forceinline__ bf16* kv_row(const KvAppendTarget& kv, int base, int t, int h, int hk) {
  const int64_t page = kv.kv_indices[base + t / kv.page_size], slot = t % kv.page_size;
  const int64_t half = int64_t(kv.page_size) * hk * D;
  const int64_t in_half = kv.hnd ? (int64_t(h) * kv.page_size + slot) * D : (slot * hk + h) * D;
  return static_cast<bf16*>(kv.pages) + page * 2 * half + in_half;
}

// One warp: head `src` (D bf16) RMS-normalised with w (if any) and rotated (rotate-half) by the
// position's rope row cs (D floats: cos, then sin), rounded to bf16, into dst (floats);
// qkv_norm_rope.cu's arithmetic.
template <int D>
__device__ void norm_rope_head(const bf16* src, const bf16* w, float eps, const float* cs,
                               bool rotate, float* dst) {
  constexpr int kHalf = D / 2, P = kHalf / 32;
  const int lane = threadIdx.x % 32, d0 = lane * P;
  float x1[P], x2[P];
#pragma unroll
  for (int i = 0; i < P; ++i) {
    x1[i] = bf(src, d0 + i);
    x2[i] = bf(src, kHalf + d0 + i);
  }
  if (w != nullptr) {
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < P; ++i) ss += x1[i] * x1[i] + x2[i] * x2[i];
    const float inv = rsqrtf(warp_sum(ss) / float(D) + eps);
#pragma unroll
    for (int i = 0; i < P; ++i) {
      x1[i] = __bfloat162float(w[d0 + i]) * (x1[i] * inv);
      x2[i] = __bfloat162float(w[kHalf + d0 + i]) * (x2[i] * inv);
    }
  }
  const float* c = cs + d0;
  const float* s = c + kHalf;
#pragma unroll
  for (int i = 0; i < P; ++i) {
    dst[d0 + i] = round_bf16(rotate ? x1[i] * c[i] - x2[i] * s[i] : x1[i]);
    dst[kHalf + d0 + i] = round_bf16(rotate ? x2[i] * c[i] + x1[i] * s[i] : x2[i]);
  }
}

// Shared memory of the attention stage (floats): the group's q heads, the new k and v, each
// warp's running state, the merge's weights per (chunk, q head), then the flag of the last block.
constexpr int kMaxChunks = 160;
template <int D, int G>
struct AttnSmem {
  float q[G][D];
  float k_new[D], v_new[D];
  float acc[kWarps][G][D];
  float m[kWarps][G], l[kWarps][G];
  float weight[kMaxChunks][G];
  int last;
};

// A block's partial state in the scratch: the group's unnormalised outputs [G][D], then the
// maxima and sums [G] each, padded to whole float4s (the merge reads the outputs 16 bytes at a
// time).
template <int D, int G>
constexpr int kPartFloats = G* D + (2 * G + 3) / 4 * 4;

// What the attention stage reads that no stage of the launch writes, copied into shared memory at
// the launch's start (stage_attention): the token's rope row, the q/k norm weights and the K/V of
// the chunk's first kStageTokens tokens (K row, then V row).
constexpr int kStageTokens = 64;
template <int D>
struct StagedSmem {
  float cos_sin[D];
  bf16 q_norm[D], k_norm[D];
  bf16 kv[kStageTokens][2][D];
};

// Tokens a warp loads before it uses them (their K and V rows in registers).
template <int G>
constexpr int kTokens = G == 1 ? 4 : 2;

// The online softmax of one warp over one token's key and value (P dims a lane).
template <int G, int P>
__device__ __forceinline__ void attend_token(const float (&q)[G][P], const float (&k)[P],
                                             const float (&v)[P], float scale, float (&m)[G],
                                             float (&l)[G], float (&acc)[G][P]) {
#pragma unroll
  for (int g = 0; g < G; ++g) {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < P; ++i) s = fmaf(q[g][i], k[i], s);
    s = warp_sum(s) * scale;
    const float m_new = fmaxf(m[g], s), corr = exp2f(m[g] - m_new), e = exp2f(s - m_new);
    l[g] = l[g] * corr + e;
#pragma unroll
    for (int i = 0; i < P; ++i) acc[g][i] = acc[g][i] * corr + e * v[i];
    m[g] = m_new;
  }
}

// The group's rows of attn from the `chunks` partial states of kv head h (the last block of the
// head runs it): weights per (chunk, head) first, then each output value's sum with its loads
// unrolled so that they are in flight together.
template <int D, int G>
__device__ void merge_chunks(const float* first, int chunks, bf16* attn, AttnSmem<D, G>& sm) {
  constexpr int kStride = kPartFloats<D, G>;
  float* sums = &sm.acc[0][0][0];  // the warps' states are merged already: scratch now
  for (int i = threadIdx.x; i < chunks * G; i += kThreads) {
    const int c = i / G, g = i % G;
    sm.weight[c][g] = __ldcg(first + c * kStride + G * D + g);  // max
    sums[i] = __ldcg(first + c * kStride + G * D + G + g);
  }
  __syncthreads();
  if (threadIdx.x < G) {
    const int g = threadIdx.x;
    float mx = -INFINITY, total = 0.0f;
    for (int c = 0; c < chunks; ++c) mx = fmaxf(mx, sm.weight[c][g]);
    for (int c = 0; c < chunks; ++c) {
      const float f = sm.weight[c][g] == -INFINITY ? 0.0f : exp2f(sm.weight[c][g] - mx);
      sm.weight[c][g] = f;
      total += f * sums[c * G + g];
    }
    for (int c = 0; c < chunks; ++c) sm.weight[c][g] /= total;
  }
  __syncthreads();
  for (int v = threadIdx.x; v < G * D / 4; v += kThreads) {  // 4 values a thread at a time
    const int g = v * 4 / D;
    float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 8
    for (int c = 0; c < chunks; ++c) {
      const float f = sm.weight[c][g];
      const float4 x = __ldcg(reinterpret_cast<const float4*>(first + c * kStride) + v);
      o.x += f * x.x, o.y += f * x.y, o.z += f * x.z, o.w += f * x.w;
    }
    reinterpret_cast<__nv_bfloat162*>(attn)[2 * v] = __floats2bfloat162_rn(o.x, o.y);
    reinterpret_cast<__nv_bfloat162*>(attn)[2 * v + 1] = __floats2bfloat162_rn(o.z, o.w);
  }
}

// Chunks of the context a kv head's attention is split into: one block each, about
// kChunkTokens tokens a chunk (every warp then loads its tokens at once) up to the grid's share.
constexpr int kChunkTokens = 32;

// The one entry's context from the plan's CSR arrays: its first page-id index (base), its length
// including the new token, and chunk `chunk` of `chunks`'s positions [t0, t1).
struct ChunkRange {
  int base, len, t0, t1;
};
__device__ __forceinline__ int context_len(const DecodeLayerParams& p) {
  return (p.kv.kv_indptr[1] - p.kv.kv_indptr[0] - 1) * p.kv.page_size + p.last_page_len[0];
}
__device__ __forceinline__ ChunkRange chunk_range(const DecodeLayerParams& p, int chunk,
                                                  int chunks) {
  const int len = context_len(p), per = (len + chunks - 1) / chunks, t0 = chunk * per;
  return {p.kv.kv_indptr[0], len, t0, min(len, t0 + per)};
}

__device__ int attention_chunks(const DecodeLayerParams& p, int hk) {
  return max(1, min(min(int(gridDim.x) / hk, kMaxChunks),
                    (context_len(p) + kChunkTokens - 1) / kChunkTokens));
}

// A block's place in the attention stage, found at the launch's start (the plan's arrays are on
// the device before the step's first kernel): its chunk of the context, how many of the chunk's
// tokens are staged, and, for chunk 0 (which writes the new token's K/V), that token's K row.
struct AttnTask {
  ChunkRange range;
  int staged = 0;
  bf16* new_k_row = nullptr;
};

// Copies what stage S2 of kv head h's chunk reads and no stage writes into st (cp.async; the
// caller commits and waits) and returns the block's task. The newest token is not staged: chunk 0
// writes its slot in this launch, and the attention takes it from S1's qkv.
template <int D>
__device__ AttnTask stage_attention(const DecodeLayerParams& p, int h, int chunk, int chunks,
                                    StagedSmem<D>& st) {
  AttnTask task;
  task.range = chunk_range(p, chunk, chunks);
  const ChunkRange& r = task.range;
  stage_bytes(st.cos_sin, p.cos_sin + int64_t(*p.rope_position) * D, D * 4);
  if (p.q_norm != nullptr) stage_bytes(st.q_norm, p.q_norm, D * 2);
  if (p.k_norm != nullptr) stage_bytes(st.k_norm, p.k_norm, D * 2);
  task.staged = max(0, min(kStageTokens, min(r.t1, r.len - 1) - r.t0));
  const int64_t half = int64_t(p.kv.page_size) * p.num_kv_heads * D;
  constexpr int kPieces = D * 2 / 16;  // 16-byte pieces of a row
  for (int i = threadIdx.x; i < task.staged * 2 * kPieces; i += kThreads) {
    const int t = i / (2 * kPieces), kind = i / kPieces % 2, piece = i % kPieces;
    const bf16* row = kv_row<D>(p.kv, r.base, r.t0 + t, h, p.num_kv_heads) + kind * half;
    cp_async16(&st.kv[t][kind][piece * 8], row + piece * 8);
  }
  if (chunk == 0)
    task.new_k_row = kv_row<D>(p.kv, p.kv.kv_indptr[p.kv.batch_indices[0]], p.kv.positions[0], h,
                               p.num_kv_heads);
  return task;
}

// S2 for kv head h, the chunk of task (one of `chunks`): see decode_layer_kernels.h. The staged
// copies (stage_attention) must be complete and visible.
template <int D, int G>
__device__ void attention_stage(const DecodeLayerParams& p, int h, int chunks, const AttnTask& task,
                                const StagedSmem<D>& st, float* partials, unsigned* head_done,
                                AttnSmem<D, G>& sm) {
  constexpr int P = D / 32, T = kTokens<G>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int hq = p.num_qo_heads, hk = p.num_kv_heads;
  const ChunkRange range = task.range;
  const int base = range.base, t0 = range.t0, t1 = range.t1, newest = range.len - 1;
  const int staged_end = t0 + task.staged;
  const bool own_new = t0 <= newest && newest < t1, writes_new = task.new_k_row != nullptr;
  const bf16* qkv = static_cast<const bf16*>(p.qkv);
  const bf16* q_norm = p.q_norm != nullptr ? st.q_norm : nullptr;
  const bf16* k_norm = p.k_norm != nullptr ? st.k_norm : nullptr;
  if (warp < G) {
    norm_rope_head<D>(qkv + int64_t(h * G + warp) * D, q_norm, p.eps, st.cos_sin, true, sm.q[warp]);
  } else if (warp == G && (own_new || writes_new)) {
    norm_rope_head<D>(qkv + int64_t(hq + h) * D, k_norm, p.eps, st.cos_sin, true, sm.k_new);
  } else if (warp == G + 1 && (own_new || writes_new)) {
    norm_rope_head<D>(qkv + int64_t(hq + hk + h) * D, nullptr, p.eps, st.cos_sin, false, sm.v_new);
  }
  __syncthreads();
  if (writes_new) {  // the new token's slot (the attention below takes it from shared memory)
    bf16* krow = task.new_k_row;
    const int64_t half = int64_t(p.kv.page_size) * hk * D;
    for (int d = threadIdx.x; d < D; d += kThreads) {
      krow[d] = __float2bfloat16(sm.k_new[d]);
      krow[half + d] = __float2bfloat16(sm.v_new[d]);
    }
  }
  // Lane l holds dims [l P, l P + P) of every row; scores in base 2. A warp takes tokens
  // t0 + warp, + kWarps, ..., T of them loaded at a time.
  const float scale = p.sm_scale * 1.4426950408889634f;
  const int64_t half = int64_t(p.kv.page_size) * hk * D;
  float q[G][P], acc[G][P], m[G], l[G];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < P; ++i) {
      q[g][i] = sm.q[g][lane * P + i];
      acc[g][i] = 0.0f;
    }
  }
  for (int t = t0 + warp; t < t1; t += T * kWarps) {
    float k[T][P], v[T][P];
#pragma unroll
    for (int j = 0; j < T; ++j) {
      const int tj = t + j * kWarps;
      if (tj >= t1) continue;
      if (tj == newest) {
#pragma unroll
        for (int i = 0; i < P; ++i) {
          k[j][i] = sm.k_new[lane * P + i];
          v[j][i] = sm.v_new[lane * P + i];
        }
      } else if (tj < staged_end) {
        load_bf16<P>(&st.kv[tj - t0][0][lane * P], k[j]);
        load_bf16<P>(&st.kv[tj - t0][1][lane * P], v[j]);
      } else {
        const bf16* kr = kv_row<D>(p.kv, base, tj, h, hk) + lane * P;
        load_bf16<P>(kr, k[j]);
        load_bf16<P>(kr + half, v[j]);
      }
    }
#pragma unroll
    for (int j = 0; j < T; ++j)
      if (t + j * kWarps < t1) attend_token<G, P>(q, k[j], v[j], scale, m, l, acc);
  }
#pragma unroll
  for (int g = 0; g < G; ++g) {
#pragma unroll
    for (int i = 0; i < P; ++i) sm.acc[warp][g][lane * P + i] = acc[g][i];
    if (lane == 0) {
      sm.m[warp][g] = m[g];
      sm.l[warp][g] = l[g];
    }
  }
  __syncthreads();
  // The block's state per q head: unnormalised output, max and sum (base 2).
  float* part = partials + int64_t(blockIdx.x) * kPartFloats<D, G>;
  for (int idx = threadIdx.x; idx < G * D; idx += kThreads) {
    const int g = idx / D, d = idx % D;
    float mx = -INFINITY;
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm.m[w][g]);
    float o = 0.0f, sum = 0.0f;
    for (int w = 0; w < kWarps; ++w) {
      const float f = sm.m[w][g] == -INFINITY ? 0.0f : exp2f(sm.m[w][g] - mx);
      o += sm.acc[w][g][d] * f;
      sum += sm.l[w][g] * f;
    }
    part[idx] = o;
    if (d == 0) {
      part[G * D + g] = mx;
      part[G * D + G + g] = sum;
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    sm.last = atomicAdd(head_done + h, 1u) == unsigned(chunks - 1);
  }
  __syncthreads();
  if (!sm.last) return;
  __threadfence();
  merge_chunks<D, G>(partials + int64_t(h) * chunks * kPartFloats<D, G>, chunks,
                     static_cast<bf16*>(p.attn) + int64_t(h) * G * D, sm);
}

// The K/V of the block's chunk past its staged tokens, asked of the L2 when the whole context is
// small enough.
template <int D>
__device__ void prefetch_kv(const DecodeLayerParams& p, int h, const AttnTask& task, Prefetch how) {
  const ChunkRange& range = task.range;
  if (int64_t(range.len) * p.num_kv_heads * D * 4 > kMaxKvPrefetch) return;
  // The newest token's slot is written in this launch, not read from the pages.
  const int t1 = min(range.t1, range.len - 1);
  const int64_t half = int64_t(p.kv.page_size) * p.num_kv_heads * D;
  for (int t = range.t0 + task.staged + int(threadIdx.x); t < t1; t += kThreads) {
    const bf16* k = kv_row<D>(p.kv, range.base, t, h, p.num_kv_heads);
    prefetch_span(k, D * 2, how);
    prefetch_span(k + half, D * 2, how);
  }
}

}  // namespace nc::cuda::decode_layer

// The MLA kernels of kernels.h (DeepSeek's latent attention, absorbed form): plain CUDA-core
// kernels that take every shape (the tiny test models' 32 + 8 as well as V2/V3's 512 + 64). They
// are the correctness path; FlashInfer's MLA kernels (fixed 512 + 64 heads) are not wired yet
// (docs/models.md, "MLA"). float32 math, one bf16 rounding per output.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/mla_kernels.h"

namespace nc::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float ld(const bf16* p, int64_t i) {
  return __bfloat162float(p[i]);
}

// Sum (max when is_max) of v over the block; every thread gets the result. red: 32 floats.
__device__ float block_reduce(float v, float* red, bool is_max) {
  for (int o = 16; o > 0; o /= 2) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, w) : v + w;
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  __syncthreads();  // red may still be read by a previous reduction
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float r = red[0];
  for (int i = 1; i < warps; ++i) r = is_max ? fmaxf(r, red[i]) : r + red[i];
  return r;
}

// Rotates the pair (a, b) of src into dst by cos c and sin s.
__device__ __forceinline__ void rotate(const bf16* src, bf16* dst, int a, int b, float c, float s) {
  const float x1 = ld(src, a), x2 = ld(src, b);
  dst[a] = __float2bfloat16(x1 * c - x2 * s);
  dst[b] = __float2bfloat16(x2 * c + x1 * s);
}

// One block per token: q's rope parts into q_mla, kv_a into the latent row.
__global__ void mla_rope_norm_kernel(const bf16* __restrict__ q, const bf16* __restrict__ kv_a,
                                     const bf16* __restrict__ norm, float eps,
                                     const int32_t* __restrict__ positions,
                                     const float* __restrict__ cos_sin, bool interleaved, int H,
                                     int Dn, int Dr, int Dl, bf16* __restrict__ q_mla,
                                     bf16* __restrict__ latent) {
  __shared__ float red[32];
  const int64_t t = blockIdx.x;
  const int D = Dl + Dr, half = Dr / 2;
  const float* c = cos_sin + int64_t(positions[t]) * Dr;
  const float* s = c + half;
  for (int i = threadIdx.x; i < H * half; i += blockDim.x) {
    const int h = i / half, j = i % half;
    const int a = interleaved ? 2 * j : j, b = interleaved ? 2 * j + 1 : j + half;
    rotate(q + (t * H + h) * (Dn + Dr) + Dn, q_mla + (t * H + h) * D + Dl, a, b, c[j], s[j]);
  }
  const bf16* row = kv_a + t * D;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < Dl; i += blockDim.x) ss += ld(row, i) * ld(row, i);
  const float inv = rsqrtf(block_reduce(ss, red, false) / float(Dl) + eps);
  for (int i = threadIdx.x; i < Dl; i += blockDim.x)
    latent[t * D + i] = __float2bfloat16(ld(norm, i) * (ld(row, i) * inv));
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    const int a = interleaved ? 2 * j : j, b = interleaved ? 2 * j + 1 : j + half;
    rotate(row + Dl, latent + t * D + Dl, a, b, c[j], s[j]);
  }
}

// One block per token: its latent row into slot dst_slot[t] of page dst_page[t].
__global__ void mla_append_kernel(const bf16* __restrict__ latent, bf16* __restrict__ pages,
                                  const int32_t* __restrict__ dst_page,
                                  const int32_t* __restrict__ dst_slot, int page_size, int D) {
  const int64_t t = blockIdx.x;
  bf16* dst = pages + (int64_t(dst_page[t]) * page_size + dst_slot[t]) * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x) dst[i] = latent[t * D + i];
}

// The cached row of token j of entry b.
__device__ __forceinline__ const bf16* key_row(const MlaLevel& L, const bf16* pages, int b, int j,
                                               int D) {
  const int32_t page = L.indices[L.indptr[b] + j / L.page_size];
  return pages + (int64_t(page) * L.page_size + j % L.page_size) * D;
}

// One block per (row, head): softmax(q . K^T * scale) over the entry's rows times their c_kv.
// Shared memory: q [D] | acc [Dl] | p [blockDim] | red [32].
__global__ void mla_attention_kernel(MlaLevel L, const bf16* __restrict__ q,
                                     const bf16* __restrict__ pages, bf16* __restrict__ out,
                                     float* __restrict__ lse, int H, int D, int Dl,
                                     float sm_scale) {
  extern __shared__ float sm[];
  float *qs = sm, *acc = qs + D, *p = acc + Dl, *red = p + blockDim.x;
  const int64_t row = blockIdx.x / H;
  const int h = int(blockIdx.x % H), b = L.row_entry[row];
  const int kv_len = L.indptr[b + 1] == L.indptr[b]
                         ? 0
                         : (L.indptr[b + 1] - L.indptr[b] - 1) * L.page_size + L.last_page_len[b];
  const int q_len = L.qo_indptr[b + 1] - L.qo_indptr[b];
  const int pos = kv_len - q_len + int(row - L.qo_indptr[b]);
  const int hi = L.causal ? pos + 1 : kv_len;
  for (int i = threadIdx.x; i < D; i += blockDim.x) qs[i] = ld(q, (row * H + h) * D + i);
  for (int i = threadIdx.x; i < Dl; i += blockDim.x) acc[i] = 0.0f;
  __syncthreads();
  auto score = [&](int j) {
    const bf16* k = key_row(L, pages, b, j, D);
    float dot = 0.0f;
    for (int d = 0; d < D; ++d) dot += qs[d] * ld(k, d);
    return dot * sm_scale;
  };
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < hi; j += blockDim.x) mx = fmaxf(mx, score(j));
  mx = block_reduce(mx, red, true);
  float sum = 0.0f;
  for (int c = 0; c < hi; c += blockDim.x) {
    const int j = c + threadIdx.x;
    const float pj = j < hi ? expf(score(j) - mx) : 0.0f;
    sum += pj;
    __syncthreads();  // the previous chunk's p is read
    p[threadIdx.x] = pj;
    __syncthreads();
    const int n = min(int(blockDim.x), hi - c);
    for (int d = threadIdx.x; d < Dl; d += blockDim.x) {
      float a = acc[d];
      for (int i = 0; i < n; ++i) a += p[i] * ld(key_row(L, pages, b, c + i, D), d);
      acc[d] = a;
    }
  }
  sum = block_reduce(sum, red, false);
  const float inv = hi > 0 ? 1.0f / sum : 0.0f;
  for (int d = threadIdx.x; d < Dl; d += blockDim.x)
    out[(row * H + h) * Dl + d] = __float2bfloat16(acc[d] * inv);
  if (lse && threadIdx.x == 0) lse[row * H + h] = hi > 0 ? mx * kLog2e + log2f(sum) : -INFINITY;
}

// One block per (row, head): (o, s) <- merge((o, s), (o2, s2)), base-2 LSE.
__global__ void mla_merge_kernel(bf16* __restrict__ o, float* __restrict__ s,
                                 const bf16* __restrict__ o2, const float* __restrict__ s2,
                                 int Dl) {
  const int64_t i = blockIdx.x;
  const float la = s[i], lb = s2[i];
  if (lb == -INFINITY) return;
  const float m = fmaxf(la, lb);
  const float wa = la == -INFINITY ? 0.0f : exp2f(la - m), wb = exp2f(lb - m), sum = wa + wb;
  for (int d = threadIdx.x; d < Dl; d += blockDim.x)
    o[i * Dl + d] = __float2bfloat16((ld(o, i * Dl + d) * wa + ld(o2, i * Dl + d) * wb) / sum);
  __syncthreads();
  if (threadIdx.x == 0) s[i] = m + log2f(sum);
}

}  // namespace

void mla_rope_norm_bf16(const void* q, const void* kv_a, const void* norm, float eps,
                        const int32_t* positions, const float* cos_sin, bool interleaved,
                        int64_t tokens, int heads, int nope_dim, int rope_dim, int latent_dim,
                        void* q_mla, void* latent, cudaStream_t stream) {
  if (tokens == 0) return;
  mla_rope_norm_kernel<<<unsigned(tokens), kThreads, 0, stream>>>(
      static_cast<const bf16*>(q), static_cast<const bf16*>(kv_a), static_cast<const bf16*>(norm),
      eps, positions, cos_sin, interleaved, heads, nope_dim, rope_dim, latent_dim,
      static_cast<bf16*>(q_mla), static_cast<bf16*>(latent));
  check_launch("mla_rope_norm");
}

void mla_append_bf16(const void* latent, void* pages, const int32_t* dst_page,
                     const int32_t* dst_slot, int64_t tokens, int page_size, int row_dim,
                     cudaStream_t stream) {
  if (tokens == 0) return;
  mla_append_kernel<<<unsigned(tokens), kThreads, 0, stream>>>(static_cast<const bf16*>(latent),
                                                               static_cast<bf16*>(pages), dst_page,
                                                               dst_slot, page_size, row_dim);
  check_launch("mla_append");
}

void mla_attention_bf16(const MlaLevel& level, const void* q, const void* pages, void* out,
                        float* lse, int64_t rows, int heads, int row_dim, int latent_dim,
                        float sm_scale, cudaStream_t stream) {
  if (rows == 0) return;
  const size_t smem = sizeof(float) * size_t(row_dim + latent_dim + kThreads + 32);
  if (smem > 48 * 1024)
    check_cuda(cudaFuncSetAttribute(mla_attention_kernel,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
               "mla_attention shared memory");
  mla_attention_kernel<<<unsigned(rows * heads), kThreads, smem, stream>>>(
      level, static_cast<const bf16*>(q), static_cast<const bf16*>(pages), static_cast<bf16*>(out),
      lse, heads, row_dim, latent_dim, sm_scale);
  check_launch("mla_attention");
}

void mla_merge_state_bf16(void* o, float* s, const void* o_other, const float* s_other,
                          int64_t rows_heads, int latent_dim, cudaStream_t stream) {
  if (rows_heads == 0) return;
  mla_merge_kernel<<<unsigned(rows_heads), kThreads, 0, stream>>>(
      static_cast<bf16*>(o), s, static_cast<const bf16*>(o_other), s_other, latent_dim);
  check_launch("mla_merge_state");
}

}  // namespace nc::cuda

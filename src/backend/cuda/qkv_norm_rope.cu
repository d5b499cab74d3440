// The attention block's prologue in one kernel (kernels.h, qkv_split_norm_rope_bf16): the fused
// q/k/v projection's rows are split into q, k and v, q and k heads are RMS-normalised (Qwen3) and
// rotated (rope, rotate-half), with one bf16 rounding at the end instead of one per op. Launched
// with programmatic dependent launch where pdl.h allows it; optionally also appends k and v to the
// KV pages (fused_kernels.h).
#include <cuda_bf16.h>

#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/fused_kernels.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"

namespace nc::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kWarpsPerBlock = 4;  // one warp per head

// P consecutive bf16 values from p as floats (P = 2: one 4-byte load).
template <int P>
__device__ __forceinline__ void load_bf16(const bf16* p, float (&x)[P]) {
  if constexpr (P == 2) {
    const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
    x[0] = f.x;
    x[1] = f.y;
  } else {
#pragma unroll
    for (int i = 0; i < P; ++i) x[i] = __bfloat162float(p[i]);
  }
}

template <int P>
__device__ __forceinline__ void store_bf16(bf16* p, const float (&x)[P]) {
  if constexpr (P == 2) {
    *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(x[0], x[1]);
  } else {
#pragma unroll
    for (int i = 0; i < P; ++i) p[i] = __float2bfloat16(x[i]);
  }
}

// Where token t's k or v head `kv_head` goes in its page (fused_kernels.h).
template <int D>
__device__ __forceinline__ bf16* page_slot(const KvAppendTarget& a, int64_t t, int kv_head,
                                           bool is_v, int hk) {
  const int entry = a.batch_indices[t], pos = a.positions[t];
  const int64_t page = a.kv_indices[a.kv_indptr[entry] + pos / a.page_size];
  const int64_t slot = pos % a.page_size, half = int64_t(a.page_size) * hk * D;
  const int64_t in_half =
      a.hnd ? (int64_t(kv_head) * a.page_size + slot) * D : (slot * hk + kv_head) * D;
  return static_cast<bf16*>(a.pages) + page * 2 * half + (is_v ? half : 0) + in_half;
}

// Grid (tokens, ceil(heads / kWarpsPerBlock)); warp w of block (t, g) takes head
// g * kWarpsPerBlock + w of token t's row, heads ordered q (hq), k (hk), v (hk). Lane l holds the
// P values from l * P of each half of the head: the rotate-half partners sit in the same lane.
// Where the half is not a multiple of 32 (head_dim 96: P = 2, 24 lanes), the lanes past it hold
// zeros for the norm's warp sum and write nothing. With append.pages set, k and v heads are also
// written into their page slots.
template <int D>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    qkv_split_norm_rope_kernel(const bf16* __restrict__ qkv, const bf16* __restrict__ q_norm,
                               const bf16* __restrict__ k_norm, float eps,
                               const int32_t* __restrict__ positions,
                               const float* __restrict__ cos_sin, int hq, int hk,
                               bf16* __restrict__ q, bf16* __restrict__ k, bf16* __restrict__ v,
                               const KvAppendTarget append) {
  constexpr int kHalf = D / 2, P = (kHalf + 31) / 32;
  static_assert(kHalf % P == 0, "head_dim must split into equal runs per lane");
  const int64_t t = blockIdx.x;
  const int heads = hq + 2 * hk;
  const int head = int(blockIdx.y) * kWarpsPerBlock + int(threadIdx.x / 32);
  pdl_trigger();
  pdl_wait();  // qkv and positions come from the kernels before (PDL, pdl.cuh); every thread waits
  if (head >= heads) return;  // the whole warp leaves together
  const int lane = int(threadIdx.x % 32), d0 = lane * P;
  const bool active = d0 < kHalf;
  const bf16* src = qkv + (t * heads + head) * D;
  float x1[P] = {}, x2[P] = {};
  if (active) {
    load_bf16<P>(src + d0, x1);
    load_bf16<P>(src + kHalf + d0, x2);
  }
  if (head >= hq + hk) {  // v: a plain copy
    if (!active) return;
    bf16* dst = v + (t * hk + (head - hq - hk)) * D;
    store_bf16<P>(dst + d0, x1);
    store_bf16<P>(dst + kHalf + d0, x2);
    if (append.pages != nullptr) {
      bf16* slot = page_slot<D>(append, t, head - hq - hk, true, hk);
      store_bf16<P>(slot + d0, x1);
      store_bf16<P>(slot + kHalf + d0, x2);
    }
    return;
  }
  const bool is_q = head < hq;
  bf16* dst = is_q ? q + (t * hq + head) * D : k + (t * hk + (head - hq)) * D;
  const bf16* w = is_q ? q_norm : k_norm;
  if (w != nullptr) {
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < P; ++i) ss += x1[i] * x1[i] + x2[i] * x2[i];
#pragma unroll
    for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    const float inv = rsqrtf(ss / float(D) + eps);
    if (!active) return;
    float w1[P], w2[P];
    load_bf16<P>(w + d0, w1);
    load_bf16<P>(w + kHalf + d0, w2);
#pragma unroll
    for (int i = 0; i < P; ++i) {
      x1[i] = w1[i] * (x1[i] * inv);
      x2[i] = w2[i] * (x2[i] * inv);
    }
  }
  if (!active) return;
  const float* c = cos_sin + int64_t(positions[t]) * D + d0;
  const float* s = c + kHalf;
  float o1[P], o2[P];
#pragma unroll
  for (int i = 0; i < P; ++i) {
    o1[i] = x1[i] * c[i] - x2[i] * s[i];
    o2[i] = x2[i] * c[i] + x1[i] * s[i];
  }
  store_bf16<P>(dst + d0, o1);
  store_bf16<P>(dst + kHalf + d0, o2);
  if (!is_q && append.pages != nullptr) {  // the same rounding as the k row just stored
    bf16* slot = page_slot<D>(append, t, head - hq, false, hk);
    store_bf16<P>(slot + d0, o1);
    store_bf16<P>(slot + kHalf + d0, o2);
  }
}

}  // namespace

namespace {

void launch_qkv(const void* qkv, const void* q_norm, const void* k_norm, float eps,
                const int32_t* positions, const float* cos_sin, int tokens, int num_qo_heads,
                int num_kv_heads, int head_dim, void* q, void* k, void* v,
                const KvAppendTarget& append, cudaStream_t stream) {
  if (tokens == 0) return;
  const int heads = num_qo_heads + 2 * num_kv_heads;
  const dim3 grid(unsigned(tokens), unsigned((heads + kWarpsPerBlock - 1) / kWarpsPerBlock));
  auto launch = [&](auto kernel) {
    launch_maybe_pdl("qkv_split_norm_rope", kernel, grid, dim3(kWarpsPerBlock * 32), 0, stream,
                     static_cast<const bf16*>(qkv), static_cast<const bf16*>(q_norm),
                     static_cast<const bf16*>(k_norm), eps, positions, cos_sin, num_qo_heads,
                     num_kv_heads, static_cast<bf16*>(q), static_cast<bf16*>(k),
                     static_cast<bf16*>(v), append);
  };
  switch (head_dim) {
    case 64:
      launch(qkv_split_norm_rope_kernel<64>);
      break;
    case 96:
      launch(qkv_split_norm_rope_kernel<96>);
      break;
    case 128:
      launch(qkv_split_norm_rope_kernel<128>);
      break;
    case 256:
      launch(qkv_split_norm_rope_kernel<256>);
      break;
    default:
      throw std::runtime_error("qkv_split_norm_rope: head_dim " + std::to_string(head_dim) +
                               " not supported (64, 96, 128, 256)");
  }
  check_launch("qkv_split_norm_rope");
}

}  // namespace

void qkv_split_norm_rope_bf16(const void* qkv, const void* q_norm, const void* k_norm, float eps,
                              const int32_t* positions, const float* cos_sin, int tokens,
                              int num_qo_heads, int num_kv_heads, int head_dim, void* q, void* k,
                              void* v, cudaStream_t stream) {
  launch_qkv(qkv, q_norm, k_norm, eps, positions, cos_sin, tokens, num_qo_heads, num_kv_heads,
             head_dim, q, k, v, KvAppendTarget{}, stream);
}

void qkv_split_norm_rope_append_bf16(const void* qkv, const void* q_norm, const void* k_norm,
                                     float eps, const int32_t* positions, const float* cos_sin,
                                     int tokens, int num_qo_heads, int num_kv_heads, int head_dim,
                                     void* q, void* k, void* v, const KvAppendTarget& append,
                                     cudaStream_t stream) {
  if (append.pages == nullptr || append.page_size < 1)
    throw std::runtime_error("qkv_split_norm_rope (append): no page tensor");
  launch_qkv(qkv, q_norm, k_norm, eps, positions, cos_sin, tokens, num_qo_heads, num_kv_heads,
             head_dim, q, k, v, append, stream);
}

}  // namespace nc::cuda

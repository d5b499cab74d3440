// Non-attention ops of kernels.h: FlashInfer's norm, rope and activation kernels, plus a few small
// elementwise kernels of our own.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <flashinfer/activation.cuh>
#include <flashinfer/norm.cuh>
#include <flashinfer/pos_enc.cuh>
#include <stdexcept>
#include <string>

#include "backend/cuda/act.cuh"
#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"
#include "core/random_init.h"

namespace nc::cuda {
namespace {

using bf16 = __nv_bfloat16;

unsigned grid_for(int64_t n, int threads) {
  return unsigned(std::min<int64_t>((n + threads - 1) / threads, int64_t(1) << 20));
}

// Row copy in 16-byte units when the row allows it, otherwise in bytes.
template <typename V>
__global__ void gather_rows_kernel(const V* __restrict__ x, const int32_t* __restrict__ rows,
                                   V* __restrict__ out, int64_t num_out, int64_t num_rows,
                                   int64_t row_elems) {
  for (int64_t r = blockIdx.x; r < num_out; r += gridDim.x) {
    const int32_t src = rows[r];
    const bool ok = src >= 0 && src < num_rows;
    for (int64_t i = threadIdx.x; i < row_elems; i += blockDim.x) {
      out[r * row_elems + i] = ok ? x[int64_t(src) * row_elems + i] : V{};
    }
  }
}

__global__ void scatter_ids_kernel(const int32_t* __restrict__ src, int64_t num_src,
                                   const int32_t* __restrict__ pairs, int64_t num_pairs,
                                   int32_t* __restrict__ dst, int64_t num_dst) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < num_pairs;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int32_t d = pairs[2 * i], s = pairs[2 * i + 1];
    if (d >= 0 && d < num_dst && s >= 0 && s < num_src) dst[d] = src[s];
  }
}

__global__ void add_bf16_kernel(bf16* __restrict__ x, const bf16* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    x[i] = __float2bfloat16(__bfloat162float(x[i]) + __bfloat162float(y[i]));
  }
}

__global__ void add_f32_kernel(float* __restrict__ x, const float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    x[i] += y[i];
  }
}

template <typename In>
__global__ void to_f32_kernel(const In* __restrict__ in, float* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = float(in[i]);
  }
}

__global__ void f32_to_bf16_kernel(const float* __restrict__ in, bf16* __restrict__ out,
                                   int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = __float2bfloat16(in[i]);  // round to nearest even
  }
}

template <bool BF16>
__global__ void fill_uniform_kernel(void* __restrict__ out, int64_t n, uint64_t seed, float low,
                                    float span) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    // No fused multiply-add: the host computes low + span * u with two roundings.
    const float x = __fadd_rn(low, __fmul_rn(span, uniform_hash01(seed, uint64_t(i))));
    if constexpr (BF16)
      static_cast<bf16*>(out)[i] = __float2bfloat16(x);
    else
      static_cast<float*>(out)[i] = x;
  }
}

// One block per row: the best (score, id) pair, ties to the lower id. MASKED: rows with
// min_p[r] >= 0 consider only the ids that probs (filter_probs) keeps and min-p passes.
constexpr int kSampleThreads = 512;
template <bool MASKED>
__global__ void sample_rows_kernel(const float* __restrict__ logits, int vocab,
                                   const float* __restrict__ inv_temperature,
                                   const uint64_t* __restrict__ seeds,
                                   const float* __restrict__ probs, const float* __restrict__ min_p,
                                   int32_t* __restrict__ out) {
  __shared__ float sb[kSampleThreads];
  __shared__ int si[kSampleThreads];
  const int r = blockIdx.x;
  const float* row = logits + int64_t(r) * vocab;
  const float inv_t = inv_temperature[r];
  const uint64_t seed = seeds[r];
  const float* prow = nullptr;
  float cutoff = 0.0f;
  if constexpr (MASKED) {
    if (inv_t != 0.0f && min_p[r] >= 0.0f) {
      prow = probs + int64_t(r) * vocab;
      float m = 0.0f;
      for (int i = threadIdx.x; i < vocab; i += blockDim.x) m = fmaxf(m, prow[i]);
      sb[threadIdx.x] = m;
      __syncthreads();
      for (int w = blockDim.x / 2; w > 0; w /= 2) {
        if (threadIdx.x < w) sb[threadIdx.x] = fmaxf(sb[threadIdx.x], sb[threadIdx.x + w]);
        __syncthreads();
      }
      cutoff = min_p[r] * sb[0];
      __syncthreads();  // sb is reused below
    }
  }
  float best = -INFINITY;
  int best_id = vocab;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    if (MASKED && prow) {
      const float p = prow[i];
      if (!(p > 0.0f && p >= cutoff)) continue;
    }
    float s = row[i];
    if (inv_t != 0.0f) {
      // Gumbel noise -log(-log(u)), u in (0, 1).
      const float u = uniform_hash01(seed, uint64_t(i)) + 0.5f / 16777216.0f;
      s = s * inv_t - __logf(-__logf(u));
    }
    if (s > best) best = s, best_id = i;  // i increases: ties keep the lower id
  }
  sb[threadIdx.x] = best;
  si[threadIdx.x] = best_id;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) {
      const float ob = sb[threadIdx.x + w];
      const int oi = si[threadIdx.x + w];
      if (ob > sb[threadIdx.x] || (ob == sb[threadIdx.x] && oi < si[threadIdx.x]))
        sb[threadIdx.x] = ob, si[threadIdx.x] = oi;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[r] = si[0] < vocab ? si[0] : 0;  // all NaN: token 0
}

// The unfiltered draw split over the vocabulary: block (c, r) scores ids [c * chunk, ...) of
// row r and folds its best into best[r] with one atomicMax on a key that orders by score, then
// by lower id (exactly sample_rows_kernel's choice, whatever the order the blocks run in).
// One block per row left most SMs idle at small batches and latency-bound at large ones.
__device__ __forceinline__ unsigned long long score_key(float s, int id) {
  const unsigned u = __float_as_uint(s);
  const unsigned ordered = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<unsigned long long>(ordered) << 32) | (0xFFFFFFFFu - unsigned(id));
}

constexpr int kPartialThreads = 256;
__global__ void sample_rows_partial_kernel(const float* __restrict__ logits, int vocab, int chunk,
                                           const float* __restrict__ inv_temperature,
                                           const uint64_t* __restrict__ seeds,
                                           unsigned long long* __restrict__ best) {
  const int r = blockIdx.y;
  const float* row = logits + int64_t(r) * vocab;
  const float inv_t = inv_temperature[r];
  const uint64_t seed = seeds[r];
  const int begin = blockIdx.x * chunk, end = min(vocab, begin + chunk);
  unsigned long long key = 0;  // 0: no candidate (every score -inf or NaN)
  for (int i = begin + threadIdx.x; i < end; i += blockDim.x) {
    float s = row[i];
    if (inv_t != 0.0f) {
      const float u = uniform_hash01(seed, uint64_t(i)) + 0.5f / 16777216.0f;
      s = s * inv_t - __logf(-__logf(u));
    }
    // -0 and +0 tie (then the lower id wins, as in sample_rows_kernel); NaN fails the test.
    if (s > -INFINITY) key = max(key, score_key(s == 0.0f ? 0.0f : s, i));
  }
  for (int o = 16; o > 0; o /= 2) key = max(key, __shfl_xor_sync(0xFFFFFFFFu, key, o));
  __shared__ unsigned long long warp_best[kPartialThreads / 32];
  if (threadIdx.x % 32 == 0) warp_best[threadIdx.x / 32] = key;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kPartialThreads / 32; ++w) key = max(key, warp_best[w]);
    if (key) atomicMax(best + r, key);
  }
}

__global__ void sample_rows_finish_kernel(unsigned long long* __restrict__ best, int rows,
                                          int32_t* __restrict__ out) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const unsigned long long key = best[r];
  out[r] = key ? int32_t(0xFFFFFFFFu - unsigned(key & 0xFFFFFFFFu)) : 0;  // none: token 0
}

}  // namespace

void embedding_bf16(const void* table, const int32_t* ids, void* out, int64_t tokens,
                    int64_t hidden, int64_t vocab, cudaStream_t stream) {
  gather_rows(table, ids, out, tokens, vocab, hidden * int64_t(sizeof(bf16)), stream);
}

void gather_rows(const void* x, const int32_t* rows, void* out, int64_t num_out, int64_t num_rows,
                 int64_t row_bytes, cudaStream_t stream) {
  if (num_out == 0) return;
  const unsigned blocks = unsigned(std::min<int64_t>(num_out, 65535));
  if (row_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
      reinterpret_cast<uintptr_t>(out) % 16 == 0) {
    gather_rows_kernel<<<blocks, 128, 0, stream>>>(static_cast<const uint4*>(x), rows,
                                                   static_cast<uint4*>(out), num_out, num_rows,
                                                   row_bytes / 16);
  } else {
    gather_rows_kernel<<<blocks, 128, 0, stream>>>(static_cast<const uint8_t*>(x), rows,
                                                   static_cast<uint8_t*>(out), num_out, num_rows,
                                                   row_bytes);
  }
  check_launch("gather_rows");
}

void scatter_ids(const int32_t* src, int64_t num_src, const int32_t* pairs, int64_t num_pairs,
                 int32_t* dst, int64_t num_dst, cudaStream_t stream) {
  if (num_pairs == 0) return;
  scatter_ids_kernel<<<grid_for(num_pairs, 256), 256, 0, stream>>>(src, num_src, pairs, num_pairs,
                                                                   dst, num_dst);
  check_launch("scatter_ids");
}

void rmsnorm_bf16(const void* x, const void* weight, void* out, int rows, int hidden, float eps,
                  cudaStream_t stream) {
  if (rows == 0) return;
  fi_call("rmsnorm", [&] {
    return flashinfer::norm::RMSNorm<bf16>(
        static_cast<bf16*>(const_cast<void*>(x)), static_cast<bf16*>(const_cast<void*>(weight)),
        static_cast<bf16*>(out), uint32_t(rows), uint32_t(hidden), uint32_t(hidden),
        uint32_t(hidden), eps, pdl_enabled(), stream);
  });
}

void add_rmsnorm_bf16(void* x, void* residual, const void* weight, int rows, int hidden, float eps,
                      cudaStream_t stream) {
  if (rows == 0) return;
  fi_call("add_rmsnorm", [&] {
    return flashinfer::norm::FusedAddRMSNorm<bf16>(
        static_cast<bf16*>(x), static_cast<bf16*>(residual),
        static_cast<bf16*>(const_cast<void*>(weight)), uint32_t(rows), uint32_t(hidden),
        uint32_t(hidden), uint32_t(hidden), eps, pdl_enabled(), stream);
  });
}

void rope_bf16(void* q, void* k, const float* cos_sin, const int32_t* positions, int tokens,
               int num_qo_heads, int num_kv_heads, int head_dim, cudaStream_t stream) {
  if (tokens == 0) return;
  bf16* qp = static_cast<bf16*>(q);
  bf16* kp = static_cast<bf16*>(k);
  const size_t qn = size_t(num_qo_heads) * head_dim, kn = size_t(num_kv_heads) * head_dim;
  fi_call("rope", [&] {
    // In place: the rotated outputs alias the inputs.
    return flashinfer::BatchQKApplyRotaryPosIdsCosSinCache<bf16, int32_t>(
        qp, kp, qp, kp, const_cast<float*>(cos_sin), const_cast<int32_t*>(positions),
        uint32_t(tokens), uint32_t(num_qo_heads), uint32_t(num_kv_heads), uint32_t(head_dim),
        uint32_t(head_dim), qn, size_t(head_dim), kn, size_t(head_dim), qn, size_t(head_dim), kn,
        size_t(head_dim), /*interleave=*/false, stream);
  });
}

namespace {

// FlashInfer's act_and_mul kernel with the largest power-of-two vector (up to 16 bytes) that
// divides the row.
template <float (*ACT)(const float&)>
void act_and_mul_bf16(const void* gate_up, void* out, int tokens, int inter, cudaStream_t stream,
                      const char* what) {
  if (tokens == 0) return;
  uint32_t vec = 8;
  while (vec > 1 && inter % vec != 0) vec /= 2;
  const unsigned threads = unsigned(std::min<int>(256, std::max<int>(32, inter / int(vec))));
  // FlashInfer's kernel waits for its predecessor (griddepcontrol) before it reads: PDL-safe.
  auto launch = [&](auto kernel) {
    launch_maybe_pdl(what, kernel, dim3(unsigned(tokens)), dim3(threads), 0, stream,
                     static_cast<bf16*>(out), static_cast<const bf16*>(gate_up), inter);
  };
  switch (vec) {
    case 8:
      launch(flashinfer::activation::act_and_mul_kernel<bf16, ACT, 8>);
      break;
    case 4:
      launch(flashinfer::activation::act_and_mul_kernel<bf16, ACT, 4>);
      break;
    case 2:
      launch(flashinfer::activation::act_and_mul_kernel<bf16, ACT, 2>);
      break;
    default:
      launch(flashinfer::activation::act_and_mul_kernel<bf16, ACT, 1>);
      break;
  }
  check_launch(what);
}

}  // namespace

void silu_and_mul_bf16(const void* gate_up, void* out, int tokens, int inter, cudaStream_t stream) {
  act_and_mul_bf16<silu>(gate_up, out, tokens, inter, stream, "silu_and_mul");
}

void gelu_tanh_and_mul_bf16(const void* gate_up, void* out, int tokens, int inter,
                            cudaStream_t stream) {
  act_and_mul_bf16<gelu_tanh>(gate_up, out, tokens, inter, stream, "gelu_tanh_and_mul");
}

void add_bf16(void* x, const void* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(static_cast<bf16*>(x),
                                                        static_cast<const bf16*>(y), n);
  check_launch("add");
}

void add_f32(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_f32_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, y, n);
  check_launch("add");
}

void bf16_to_f32(const void* in, float* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  to_f32_kernel<<<grid_for(n, 256), 256, 0, stream>>>(static_cast<const bf16*>(in), out, n);
  check_launch("bf16_to_f32");
}

void f16_to_f32(const void* in, float* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  to_f32_kernel<<<grid_for(n, 256), 256, 0, stream>>>(static_cast<const __half*>(in), out, n);
  check_launch("f16_to_f32");
}

void f32_to_bf16(const float* in, void* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  f32_to_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(in, static_cast<bf16*>(out), n);
  check_launch("f32_to_bf16");
}

void fill_uniform(void* out, bool bf16, int64_t n, uint64_t seed, float low, float high,
                  cudaStream_t stream) {
  if (n == 0) return;
  if (bf16)
    fill_uniform_kernel<true><<<grid_for(n, 256), 256, 0, stream>>>(out, n, seed, low, high - low);
  else
    fill_uniform_kernel<false><<<grid_for(n, 256), 256, 0, stream>>>(out, n, seed, low, high - low);
  check_launch("fill_uniform");
}

void sample_rows(const float* logits, int rows, int vocab, const float* inv_temperature,
                 const uint64_t* seeds, const float* probs, const float* min_p, int32_t* out,
                 void* scratch, cudaStream_t stream) {
  if (rows == 0) return;
  if (rows > 65535) throw std::runtime_error("sample_rows: more than 65535 rows");
  if (probs) {
    sample_rows_kernel<true><<<unsigned(rows), kSampleThreads, 0, stream>>>(
        logits, vocab, inv_temperature, seeds, probs, min_p, out);
    check_launch("sample_rows");
    return;
  }
  // About 1024 blocks in all, each over at least 1024 ids.
  const int max_chunks = (vocab + 1023) / 1024;
  const int chunks = std::max(1, std::min(max_chunks, (1024 + rows - 1) / rows));
  const int chunk = (vocab + chunks - 1) / chunks;
  auto* best = static_cast<unsigned long long*>(scratch);
  check_cuda(cudaMemsetAsync(best, 0, size_t(rows) * sizeof(*best), stream), "sample_rows");
  sample_rows_partial_kernel<<<dim3(unsigned(chunks), unsigned(rows)), kPartialThreads, 0,
                               stream>>>(logits, vocab, chunk, inv_temperature, seeds, best);
  check_launch("sample_rows");
  sample_rows_finish_kernel<<<unsigned((rows + 255) / 256), 256, 0, stream>>>(best, rows, out);
  check_launch("sample_rows");
}

}  // namespace nc::cuda

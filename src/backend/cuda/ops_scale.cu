// Elementwise logit ops of kernels.h: scale (bf16, f32), the logit soft cap (f32) and the
// structured-output token bitmask (f32).
#include <cuda_bf16.h>

#include <algorithm>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/kernels.h"

namespace nc::cuda {
namespace {

using bf16 = __nv_bfloat16;

unsigned blocks_for(int64_t n, int threads) {
  return unsigned(std::min<int64_t>((n + threads - 1) / threads, int64_t(1) << 20));
}

// Grid-stride loops: the grid is capped, so one thread may see several elements.
__global__ void scale_bf16_kernel(bf16* __restrict__ x, float s, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = __float2bfloat16(__bfloat162float(x[i]) * s);
}

__global__ void scale_f32_kernel(float* __restrict__ x, float s, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= s;
}

__global__ void soft_cap_f32_kernel(float* __restrict__ x, float cap, float inv_cap, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = cap * tanhf(x[i] * inv_cap);
}

// logits[r][i] = -inf where bit i % 32 of mask[r][i / 32] is clear (one element per thread).
__global__ void token_bitmask_f32_kernel(float* __restrict__ logits,
                                         const int32_t* __restrict__ mask, int64_t rows,
                                         int64_t vocab, int64_t words) {
  const int64_t n = rows * vocab;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / vocab, i = e % vocab;
    const uint32_t w = uint32_t(mask[r * words + i / 32]);
    if (!((w >> (i % 32)) & 1u)) logits[e] = -INFINITY;
  }
}

}  // namespace

void apply_token_bitmask_f32(float* logits, const int32_t* mask, int64_t rows, int64_t vocab,
                             cudaStream_t stream) {
  if (rows == 0 || vocab == 0) return;
  token_bitmask_f32_kernel<<<blocks_for(rows * vocab, 256), 256, 0, stream>>>(
      logits, mask, rows, vocab, (vocab + 31) / 32);
  check_launch("apply_token_bitmask");
}

void scale_bf16(void* x, float s, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  scale_bf16_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(static_cast<bf16*>(x), s, n);
  check_launch("scale");
}

void scale_f32(float* x, float s, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  scale_f32_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(x, s, n);
  check_launch("scale");
}

void soft_cap_f32(float* x, float cap, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  soft_cap_f32_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(x, cap, 1.0f / cap, n);
  check_launch("soft_cap");
}

}  // namespace nc::cuda

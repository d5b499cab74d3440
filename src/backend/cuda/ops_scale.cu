// Elementwise scaling ops of kernels.h: scale (bf16, f32) and the logit soft cap (f32).
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

}  // namespace

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

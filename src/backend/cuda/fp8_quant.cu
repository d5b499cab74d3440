// The FP8 activation quantiser and the bias add of fp8_kernels.h.
//
// One 256-thread block per activation row: a block-wide max of |x| (skipped under a static input
// scale), then every value divided by the row's scale and converted with __NV_SATFINITE. Rows
// whose width is a multiple of 8 (and 16-byte aligned) move 8 values a thread per step (one
// 16-byte load, one 8-byte store of codes); others go value by value.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/fp8_kernels.h"

namespace nc::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 256;
constexpr float kE4M3Max = 448.0f;  // core/fp8.h's kE4M3Max (a device constant here)

__device__ __forceinline__ uint32_t e4m3(float v) {
  return uint32_t(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
}

__device__ __forceinline__ void unpack8(const uint4& v, float f[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __bfloat1622float2(h[i]);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}

// The largest v over the block (every thread gets it). Called once per block: the shared array
// is written once, so one barrier suffices.
__device__ float block_max(float v) {
  __shared__ float warp_max[kThreads / 32];
  for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = v;
  __syncthreads();
  float m = warp_max[0];
#pragma unroll
  for (int i = 1; i < kThreads / 32; ++i) m = fmaxf(m, warp_max[i]);
  return m;
}

// VEC: k % 8 == 0 and x 16-byte aligned (then every row is, and its codes 8-byte aligned).
template <bool VEC>
__global__ void __launch_bounds__(kThreads)
    quantize_rows_kernel(const bf16* __restrict__ x, int k, const float* __restrict__ input_scale,
                         uint8_t* __restrict__ codes, float* __restrict__ scales) {
  const int64_t r = blockIdx.x;
  const bf16* xr = x + r * k;
  uint8_t* cr = codes + r * k;
  float s = *input_scale;
  if (!(s > 0)) {  // per-token dynamic: max|x| / 448 (fmaxf skips NaN as std::max does on the CPU)
    float amax = 0.0f;
    if (VEC) {
      for (int c = threadIdx.x; c < k / 8; c += kThreads) {
        float f[8];
        unpack8(__ldg(reinterpret_cast<const uint4*>(xr) + c), f);
#pragma unroll
        for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(f[i]));
      }
    } else {
      for (int i = threadIdx.x; i < k; i += kThreads)
        amax = fmaxf(amax, fabsf(__bfloat162float(xr[i])));
    }
    amax = block_max(amax);
    s = amax > 0.0f ? __fdiv_rn(amax, kE4M3Max) : 1.0f;
  }
  if (threadIdx.x == 0) scales[r] = s;
  if (VEC) {
    for (int c = threadIdx.x; c < k / 8; c += kThreads) {
      float f[8];
      unpack8(__ldg(reinterpret_cast<const uint4*>(xr) + c), f);
      uint2 out;
      out.x = e4m3(__fdiv_rn(f[0], s)) | e4m3(__fdiv_rn(f[1], s)) << 8 |
              e4m3(__fdiv_rn(f[2], s)) << 16 | e4m3(__fdiv_rn(f[3], s)) << 24;
      out.y = e4m3(__fdiv_rn(f[4], s)) | e4m3(__fdiv_rn(f[5], s)) << 8 |
              e4m3(__fdiv_rn(f[6], s)) << 16 | e4m3(__fdiv_rn(f[7], s)) << 24;
      reinterpret_cast<uint2*>(cr)[c] = out;
    }
  } else {
    for (int i = threadIdx.x; i < k; i += kThreads)
      cr[i] = uint8_t(e4m3(__fdiv_rn(__bfloat162float(xr[i]), s)));
  }
}

template <typename T>
__global__ void add_bias_kernel(T* out, const T* __restrict__ bias, int64_t rows, int64_t m) {
  const int64_t n = rows * m;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (sizeof(T) == 4) {
      out[i] += bias[i % m];
    } else {
      out[i] = __float2bfloat16(__bfloat162float(out[i]) + __bfloat162float(bias[i % m]));
    }
  }
}

}  // namespace

void fp8_quantize_rows(const void* x, int64_t rows, int64_t k, const float* input_scale,
                       uint8_t* codes, float* scales, cudaStream_t stream) {
  if (rows < 1 || rows > int64_t(0x7fffffff) || k < 1 || k >= (int64_t(1) << 31))
    throw std::runtime_error("fp8 quantize: bad shape rows " + std::to_string(rows) + ", k " +
                             std::to_string(k));
  const bool vec = k % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(codes) % 8 == 0;
  const auto* xb = static_cast<const bf16*>(x);
  if (vec)
    quantize_rows_kernel<true>
        <<<unsigned(rows), kThreads, 0, stream>>>(xb, int(k), input_scale, codes, scales);
  else
    quantize_rows_kernel<false>
        <<<unsigned(rows), kThreads, 0, stream>>>(xb, int(k), input_scale, codes, scales);
  check_launch("fp8 quantize");
}

void fp8_add_bias(void* out, const void* bias, bool f32_out, int64_t rows, int64_t m,
                  cudaStream_t stream) {
  if (rows < 1 || m < 1) throw std::runtime_error("fp8 bias: empty output");
  const int64_t n = rows * m;
  const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 4096));
  if (f32_out)
    add_bias_kernel<float><<<blocks, 256, 0, stream>>>(static_cast<float*>(out),
                                                       static_cast<const float*>(bias), rows, m);
  else
    add_bias_kernel<bf16><<<blocks, 256, 0, stream>>>(static_cast<bf16*>(out),
                                                      static_cast<const bf16*>(bias), rows, m);
  check_launch("fp8 bias");
}

}  // namespace nc::cuda

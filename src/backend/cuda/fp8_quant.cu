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
#include "backend/cuda/fp8_device.cuh"
#include "backend/cuda/fp8_kernels.h"

namespace nc::cuda {
namespace {

using bf16 = __nv_bfloat16;
using fp8_dev::block_max;
using fp8_dev::codes8;
using fp8_dev::e4m3;
constexpr int kThreads = 256;

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
    s = fp8_dev::dynamic_scale(block_max<kThreads>(amax));
  }
  if (threadIdx.x == 0) scales[r] = s;
  if (VEC) {
    for (int c = threadIdx.x; c < k / 8; c += kThreads) {
      float f[8];
      unpack8(__ldg(reinterpret_cast<const uint4*>(xr) + c), f);
      reinterpret_cast<uint2*>(cr)[c] = codes8(f, s);
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

// 16-byte vectors of 8 bf16 values as floats and back, shared by the kernels that stream bf16
// rows 8 values a thread (gemv.cu, the FP8 quantisers of fp8_device.cuh).
#pragma once
#include <cuda_bf16.h>

namespace nc::cuda {

// The 8 bf16 values of a 16-byte vector as floats.
__device__ __forceinline__ void unpack8(const uint4& v, float f[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __bfloat1622float2(h[i]);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}

// 8 floats rounded to bf16 (to nearest even) in a 16-byte vector.
__device__ __forceinline__ uint4 pack8(const float f[8]) {
  uint4 r;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&r);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return r;
}

}  // namespace nc::cuda

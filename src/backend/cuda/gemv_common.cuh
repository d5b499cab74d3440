// What the bf16 GEMV (gemv.cu) and the FP8 GEMV (gemv_fp8.cu) share: the device's SM count, how
// many warps split one weight row, and the store of one output element (bias added, bf16 or
// float32 out). Both kernels have blocks of max_warps warps whose lanes read 16-byte chunks of a
// weight row, two chunks in flight a lane.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace nc::cuda {

// The current device's multiprocessors, read once.
inline int gemv_sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev);
    return std::max(v, 1);
  }();
  return n;
}

// Warps per weight row: enough warps in flight (about 32 per SM) while each lane keeps at least
// four 16-byte chunks (of weights_per_chunk weights) of its row.
inline int gemv_warps_per_row(int64_t m, int64_t k, int weights_per_chunk, int max_warps) {
  const int64_t want = int64_t(gemv_sm_count()) * 32;
  int wpr = 1;
  while (wpr < max_warps && m * wpr < want && k / weights_per_chunk / (int64_t(wpr) * 2 * 32) >= 4)
    wpr *= 2;
  return wpr;
}

// out[o] = s (+ bias[row]), as float32 or rounded once to bf16; bias has the output's dtype.
__device__ __forceinline__ void gemv_store(void* out, const void* bias, bool f32_out, int64_t o,
                                           int64_t row, float s) {
  if (f32_out) {
    if (bias) s += static_cast<const float*>(bias)[row];
    static_cast<float*>(out)[o] = s;
  } else {
    if (bias) s += __bfloat162float(static_cast<const __nv_bfloat16*>(bias)[row]);
    static_cast<__nv_bfloat16*>(out)[o] = __float2bfloat16(s);
  }
}

}  // namespace nc::cuda

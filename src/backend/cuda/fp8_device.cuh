// Device helpers shared by the FP8 activation quantisers (fp8_quant.cu, fp8_mlp.cu, fp8_norm.cu),
// so that every kernel that writes activation codes converts and reduces the same way (bf16
// vectors: bf16_vec.cuh).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "backend/cuda/bf16_vec.cuh"

namespace nc::cuda::fp8_dev {

constexpr float kE4M3Max = 448.0f;  // core/fp8.h's kE4M3Max (a device constant here)

// v's e4m3 code, rounded to nearest even and saturated (core/fp8.h's f32_to_e4m3).
__device__ __forceinline__ uint32_t e4m3(float v) {
  return uint32_t(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
}

// The codes of 8 values divided by s (IEEE division, as the CPU's rule), packed little-endian.
__device__ __forceinline__ uint2 codes8(const float f[8], float s) {
  uint2 out;
  out.x = e4m3(__fdiv_rn(f[0], s)) | e4m3(__fdiv_rn(f[1], s)) << 8 |
          e4m3(__fdiv_rn(f[2], s)) << 16 | e4m3(__fdiv_rn(f[3], s)) << 24;
  out.y = e4m3(__fdiv_rn(f[4], s)) | e4m3(__fdiv_rn(f[5], s)) << 8 |
          e4m3(__fdiv_rn(f[6], s)) << 16 | e4m3(__fdiv_rn(f[7], s)) << 24;
  return out;
}

// The largest v over a block of THREADS threads (every thread gets it). Called once per block:
// the shared array is written once, so one barrier suffices.
template <int THREADS>
__device__ float block_max(float v) {
  __shared__ float warp_max[THREADS / 32];
  for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = v;
  __syncthreads();
  float m = warp_max[0];
#pragma unroll
  for (int i = 1; i < THREADS / 32; ++i) m = fmaxf(m, warp_max[i]);
  return m;
}

// The sum of v over a block of THREADS threads (every thread gets it); once per block, as
// block_max.
template <int THREADS>
__device__ float block_sum(float v) {
  __shared__ float warp_sum[THREADS / 32];
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  if (threadIdx.x % 32 == 0) warp_sum[threadIdx.x / 32] = v;
  __syncthreads();
  float s = warp_sum[0];
#pragma unroll
  for (int i = 1; i < THREADS / 32; ++i) s += warp_sum[i];
  return s;
}

// A row's dynamic activation scale from its max |value| (fp8_activation_scale's rule without a
// static input scale): amax / 448, 1 for an all-zero row.
__device__ __forceinline__ float dynamic_scale(float amax) {
  return amax > 0.0f ? __fdiv_rn(amax, kE4M3Max) : 1.0f;
}

// Host side: dynamic shared memory beyond what a launch gets without asking. Static and dynamic
// shared memory together must fit 48 KB unless the kernel was opted into more on the device
// (cudaFuncSetAttribute, per kernel and device). kStaticReserve bounds the static arrays of the
// kernels that use this (the block reductions' few floats).
constexpr int kStaticReserve = 1024;
constexpr int kMaxDevices = 64;

// The current device (0..kMaxDevices-1; throws beyond).
inline int current_device() {
  int device = 0;
  cudaGetDevice(&device);
  if (device < 0 || device >= kMaxDevices)
    throw std::runtime_error("fp8 kernels: device " + std::to_string(device) + " beyond " +
                             std::to_string(kMaxDevices));
  return device;
}

// Lets `kernel` take `bytes` of dynamic shared memory on the current device; `granted` (one
// slot per device, zero-initialised by the caller's static storage) remembers the largest opted
// into. Throws where the GPU refuses.
template <typename Kernel>
void allow_dynamic_smem(Kernel kernel, int bytes, std::atomic<int> (&granted)[kMaxDevices],
                        const char* what) {
  if (bytes + kStaticReserve <= (48 << 10)) return;
  std::atomic<int>& g = granted[current_device()];
  if (bytes <= g.load(std::memory_order_relaxed)) return;
  const cudaError_t e =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + std::to_string(bytes) +
                             " bytes of shared memory refused: " + cudaGetErrorString(e));
  int seen = g.load(std::memory_order_relaxed);
  while (seen < bytes && !g.compare_exchange_weak(seen, bytes)) {
  }
}

// The most dynamic shared memory a block of the current device may opt into, less the static
// reserve (asked of the driver once per device).
inline int max_dynamic_smem() {
  static std::atomic<int> optin[kMaxDevices];
  const int device = current_device();
  int v = optin[device].load(std::memory_order_relaxed);
  if (v == 0) {
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
            cudaSuccess ||
        v < (48 << 10))
      v = 48 << 10;
    optin[device].store(v, std::memory_order_relaxed);
  }
  return v - kStaticReserve;
}

}  // namespace nc::cuda::fp8_dev

// The GEMV-style linear of gemv_kernels.h.
//
// Each weight row is split over `wpr` warps (1..8) of a 256-thread block; each lane streams 16-byte
// chunks of the row (8 bf16, cache-streaming loads: the weights are read once) and multiplies them
// with the same chunk of every x row (cached loads: x is small and shared by all warps), keeping
// one float32 sum per x row in registers. Warp shuffles then shared memory reduce the partial sums.
// wpr grows while the grid is too small to keep the memory system busy (few output rows) and each
// lane still has several chunks to stream.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/gemv_kernels.h"

namespace nc::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 256, kWarps = kThreads / 32;

__device__ __forceinline__ void unpack8(const uint4& v, float f[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __bfloat1622float2(h[i]);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}

// NT: the x rows held in registers (rows <= NT; rows past `rows` are skipped).
template <int NT>
__global__ void __launch_bounds__(kThreads)
    gemv_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w, const void* bias, void* out,
                bool f32_out, int rows, int m, int k, int wpr) {
  __shared__ float partial[kWarps][NT];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = blockIdx.x * (kWarps / wpr) + warp / wpr, slice = warp % wpr;
  float acc[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) acc[j] = 0.0f;
  const int chunks = k / 8;
  if (row < m) {
    const uint4* wr = reinterpret_cast<const uint4*>(w + int64_t(row) * k);
#pragma unroll 4
    for (int c = slice * 32 + lane; c < chunks; c += wpr * 32) {
      float wf[8];
      unpack8(__ldcs(wr + c), wf);
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        if (j < rows) {
          float xf[8];
          unpack8(__ldg(reinterpret_cast<const uint4*>(x + int64_t(j) * k) + c), xf);
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[j] = fmaf(wf[i], xf[i], acc[j]);
        }
      }
    }
  }
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    for (int off = 16; off > 0; off /= 2) acc[j] += __shfl_xor_sync(0xffffffffu, acc[j], off);
  }
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < NT; ++j) partial[warp][j] = acc[j];
  }
  __syncthreads();
  // The first warp of each row's group sums its slices; lane j writes x row j's output.
  if (slice != 0 || row >= m || lane >= rows || lane >= NT) return;
  float s = 0.0f;
  for (int i = 0; i < wpr; ++i) s += partial[warp + i][lane];
  const int64_t o = int64_t(lane) * m + row;
  if (f32_out) {
    if (bias) s += static_cast<const float*>(bias)[row];
    static_cast<float*>(out)[o] = s;
  } else {
    if (bias) s += __bfloat162float(static_cast<const bf16*>(bias)[row]);
    static_cast<bf16*>(out)[o] = __float2bfloat16(s);
  }
}

int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev);
    return std::max(v, 1);
  }();
  return n;
}

// Warps per weight row: enough warps in flight (about 32 per SM) while each lane keeps at least
// four 16-byte chunks of its row.
int warps_per_row(int64_t m, int64_t k) {
  const int64_t want = int64_t(sm_count()) * 32;
  int wpr = 1;
  while (wpr < kWarps && m * wpr < want && k / 8 / (int64_t(wpr) * 2 * 32) >= 4) wpr *= 2;
  return wpr;
}

template <int NT>
void launch(const void* x, const void* w, const void* bias, void* out, bool f32_out, int rows,
            int64_t m, int64_t k, cudaStream_t stream) {
  const int wpr = warps_per_row(m, k), rows_per_block = kWarps / wpr;
  const unsigned blocks = unsigned((m + rows_per_block - 1) / rows_per_block);
  gemv_kernel<NT><<<blocks, kThreads, 0, stream>>>(static_cast<const bf16*>(x),
                                                   static_cast<const bf16*>(w), bias, out, f32_out,
                                                   rows, int(m), int(k), wpr);
  check_launch("gemv");
}

}  // namespace

bool gemv_supported(int64_t rows, int64_t k, const void* x, const void* w) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return rows >= 1 && rows <= kGemvMaxRows && k % 8 == 0 && k < (int64_t(1) << 31) && aligned(x) &&
         aligned(w);
}

void gemv_bf16(const void* x, const void* w, const void* bias, void* out, bool f32_out,
               int64_t rows, int64_t m, int64_t k, cudaStream_t stream) {
  if (!gemv_supported(rows, k, x, w) || m < 1 || m >= (int64_t(1) << 31))
    throw std::runtime_error("gemv: unsupported shape rows " + std::to_string(rows) + ", m " +
                             std::to_string(m) + ", k " + std::to_string(k) +
                             " (or unaligned pointers)");
  const int r = int(rows);
  if (r <= 1) return launch<1>(x, w, bias, out, f32_out, r, m, k, stream);
  if (r <= 2) return launch<2>(x, w, bias, out, f32_out, r, m, k, stream);
  if (r <= 4) return launch<4>(x, w, bias, out, f32_out, r, m, k, stream);
  if (r <= 8) return launch<8>(x, w, bias, out, f32_out, r, m, k, stream);
  launch<16>(x, w, bias, out, f32_out, r, m, k, stream);
}

}  // namespace nc::cuda

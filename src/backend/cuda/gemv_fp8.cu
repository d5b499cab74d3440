// The GEMV-style FP8 product of fp8_kernels.h (fp8_gemv), for decode batches.
//
// gemv.cu's scheme with one byte a weight: each weight row is split over `wpr` warps (1..8) of a
// 256-thread block; each lane streams 16-byte chunks of the row (16 e4m3 codes, cache-streaming
// loads: the weights are read once) and the same chunk of each of up to 8 activation rows (cached
// loads: they are small and shared by all warps). Codes become float32 through the hardware's
// e4m3x2 -> f16x2 conversion (exact: every e4m3 value is an f16) and are multiplied and summed in
// float32, one sum per activation row in registers; warp shuffles then shared memory reduce the
// slices. The scales (and the bias) are applied to the float sum, as the CPU reference does:
// (sum * a_scale[n]) * w_scale[m]. More than 8 activation rows take further blocks along y, each
// reading the weights again (a fallback only: cuBLASLt runs those shapes; fp8_gemm.h).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/fp8_kernels.h"
#include "backend/cuda/gemv_common.cuh"

namespace nc::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr int kMaxRowsPerPass = 8;

__device__ __forceinline__ float decode1(uint8_t code) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(code, __NV_E4M3)));
}

// 16 codes (byte i of the chunk is value i) to float32.
__device__ __forceinline__ void decode16(const uint4& v, float f[16]) {
  const __nv_fp8x2_storage_t* p = reinterpret_cast<const __nv_fp8x2_storage_t*>(&v);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float2 h = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(p[i], __NV_E4M3)));
    f[2 * i] = h.x;  // the low byte
    f[2 * i + 1] = h.y;
  }
}

// NT: activation rows per block (rows n0 .. n0 + NT - 1, those past `rows` skipped).
// VEC: k % 16 == 0 and a, w 16-byte aligned.
template <int NT, bool VEC>
__global__ void __launch_bounds__(kThreads)
    gemv_fp8_kernel(const uint8_t* __restrict__ a, const float* __restrict__ a_scale,
                    const uint8_t* __restrict__ w, const float* __restrict__ w_scale,
                    const void* bias, void* out, bool f32_out, int rows, int m, int k, int wpr) {
  __shared__ float partial[kWarps][NT];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = blockIdx.x * (kWarps / wpr) + warp / wpr, slice = warp % wpr;
  const int n0 = blockIdx.y * NT, nrows = min(NT, rows - n0);
  float acc[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) acc[j] = 0.0f;
  if (row < m) {
    const uint8_t* wr = w + int64_t(row) * k;
    const uint8_t* ar = a + int64_t(n0) * k;
    if constexpr (VEC) {
      const int chunks = k / 16;
#pragma unroll 2
      for (int c = slice * 32 + lane; c < chunks; c += wpr * 32) {
        float wf[16];
        decode16(__ldcs(reinterpret_cast<const uint4*>(wr) + c), wf);
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          if (j < nrows) {
            float af[16];
            decode16(__ldg(reinterpret_cast<const uint4*>(ar + int64_t(j) * k) + c), af);
#pragma unroll
            for (int i = 0; i < 16; ++i) acc[j] = fmaf(wf[i], af[i], acc[j]);
          }
        }
      }
    } else {
      for (int i = slice * 32 + lane; i < k; i += wpr * 32) {
        const float wv = decode1(wr[i]);
#pragma unroll
        for (int j = 0; j < NT; ++j)
          if (j < nrows) acc[j] = fmaf(wv, decode1(ar[int64_t(j) * k + i]), acc[j]);
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
  // The first warp of each row's group sums its slices; lane j writes activation row n0 + j.
  if (slice != 0 || row >= m || lane >= nrows) return;
  float s = 0.0f;
  for (int i = 0; i < wpr; ++i) s += partial[warp + i][lane];
  const int n = n0 + lane;
  s = s * a_scale[n] * w_scale[row];
  const int64_t o = int64_t(n) * m + row;
  gemv_store(out, bias, f32_out, o, row, s);
}

// 16 e4m3 weights a 16-byte chunk.
int warps_per_row(int64_t m, int64_t k) {
  return gemv_warps_per_row(m, k, 16, kWarps);
}

template <int NT, bool VEC>
void launch(const uint8_t* a, const float* a_scale, const uint8_t* w, const float* w_scale,
            const void* bias, void* out, bool f32_out, int64_t rows, int64_t m, int64_t k,
            cudaStream_t stream) {
  const int wpr = warps_per_row(m, k), rows_per_block = kWarps / wpr;
  const dim3 grid(unsigned((m + rows_per_block - 1) / rows_per_block),
                  unsigned((rows + NT - 1) / NT));
  gemv_fp8_kernel<NT, VEC><<<grid, kThreads, 0, stream>>>(a, a_scale, w, w_scale, bias, out,
                                                          f32_out, int(rows), int(m), int(k), wpr);
  check_launch("fp8 gemv");
}

template <bool VEC>
void launch_rows(const uint8_t* a, const float* a_scale, const uint8_t* w, const float* w_scale,
                 const void* bias, void* out, bool f32_out, int64_t rows, int64_t m, int64_t k,
                 cudaStream_t stream) {
  if (rows <= 1)
    return launch<1, VEC>(a, a_scale, w, w_scale, bias, out, f32_out, rows, m, k, stream);
  if (rows <= 2)
    return launch<2, VEC>(a, a_scale, w, w_scale, bias, out, f32_out, rows, m, k, stream);
  if (rows <= 4)
    return launch<4, VEC>(a, a_scale, w, w_scale, bias, out, f32_out, rows, m, k, stream);
  launch<kMaxRowsPerPass, VEC>(a, a_scale, w, w_scale, bias, out, f32_out, rows, m, k, stream);
}

}  // namespace

void fp8_gemv(const uint8_t* a, const float* a_scale, const uint8_t* w, const float* w_scale,
              const void* bias, void* out, bool f32_out, int64_t rows, int64_t m, int64_t k,
              cudaStream_t stream) {
  if (rows < 1 || (rows + kMaxRowsPerPass - 1) / kMaxRowsPerPass > 65535 || m < 1 ||
      m >= (int64_t(1) << 31) || k < 1 || k >= (int64_t(1) << 31))
    throw std::runtime_error("fp8 gemv: unsupported shape rows " + std::to_string(rows) + ", m " +
                             std::to_string(m) + ", k " + std::to_string(k));
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (k % 16 == 0 && aligned(a) && aligned(w))
    launch_rows<true>(a, a_scale, w, w_scale, bias, out, f32_out, rows, m, k, stream);
  else
    launch_rows<false>(a, a_scale, w, w_scale, bias, out, f32_out, rows, m, k, stream);
}

}  // namespace nc::cuda

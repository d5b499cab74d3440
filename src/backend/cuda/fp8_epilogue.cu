// The scale epilogue of fp8_kernels.h (fp8_scale_output): the second half of the FP8 linear's
// scalar-scaled cuBLASLt path (fp8_gemm.h), which leaves the unscaled e4m3 x e4m3 sums in `out`.
//
// A memory-bound pass, one 16-byte vector a thread per step (8 bf16 or 4 float32 outputs):
// load the sums, multiply each by its row's activation scale then its column's weight scale (the
// GEMV's and the CPU's order: (sum * s_x[n]) * s_w[m]), add the bias in float32, round once to
// out's type and store in place. The intrinsics keep each operation rounded as written (no
// fused multiply-add), so a host computing the same expression gets the same bits. The weight
// scales come as one 16-byte load (m % 4 == 0 columns at a 16-byte aligned address), the bias value
// by value (its alignment is not required). Rows and columns are found from the flat vector index
// with one 64-bit division, hidden behind the memory traffic.
#include <cuda_bf16.h>

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
constexpr int64_t kMaxBlocks = 8192;  // grid-stride beyond (a few waves of 132 SMs x 8 blocks)

template <typename T>
struct Vec;  // 16 bytes of T as float32 values

template <>
struct Vec<float> {
  static constexpr int kN = 4;
  __device__ static void load(const uint4& r, float f[kN]) {
    f[0] = __uint_as_float(r.x), f[1] = __uint_as_float(r.y);
    f[2] = __uint_as_float(r.z), f[3] = __uint_as_float(r.w);
  }
  __device__ static uint4 store(const float f[kN]) {
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]),
                      __float_as_uint(f[3]));
  }
  __device__ static float bias(const void* b, int64_t i) {
    return __ldg(static_cast<const float*>(b) + i);
  }
};

template <>
struct Vec<bf16> {
  static constexpr int kN = 8;
  __device__ static void load(const uint4& r, float f[kN]) {
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&r);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 p = __bfloat1622float2(h[i]);
      f[2 * i] = p.x, f[2 * i + 1] = p.y;
    }
  }
  __device__ static uint4 store(const float f[kN]) {
    uint4 r;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&r);
#pragma unroll
    for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    return r;
  }
  __device__ static float bias(const void* b, int64_t i) {
    return __bfloat162float(static_cast<const bf16*>(b)[i]);
  }
};

template <typename T>
__global__ void __launch_bounds__(kThreads)
    scale_output_kernel(uint4* out, const float* __restrict__ row_scale,
                        const float* __restrict__ col_scale, const void* bias, int64_t rows,
                        int64_t m) {
  constexpr int V = Vec<T>::kN;
  const int64_t per_row = m / V, total = rows * per_row;
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * kThreads) {
    const int64_t n = i / per_row, c0 = (i - n * per_row) * V;
    float v[V];
    Vec<T>::load(out[i], v);
    const float rs = __ldg(row_scale + n);
    float cs[V];
#pragma unroll
    for (int j = 0; j < V; j += 4) {
      const float4 c = __ldg(reinterpret_cast<const float4*>(col_scale + c0 + j));
      cs[j] = c.x, cs[j + 1] = c.y, cs[j + 2] = c.z, cs[j + 3] = c.w;
    }
#pragma unroll
    for (int j = 0; j < V; ++j) {
      v[j] = __fmul_rn(__fmul_rn(v[j], rs), cs[j]);  // never contracted into an FMA
      if (bias) v[j] = __fadd_rn(v[j], Vec<T>::bias(bias, c0 + j));
    }
    out[i] = Vec<T>::store(v);
  }
}

}  // namespace

void fp8_scale_output(void* out, bool f32_out, const float* row_scale, const float* col_scale,
                      const void* bias, int64_t rows, int64_t m, cudaStream_t stream) {
  const int64_t per_vec = f32_out ? 4 : 8;
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (rows < 1 || m < 1 || m % per_vec != 0 || !aligned(out) || !aligned(col_scale))
    throw std::runtime_error("fp8 scale epilogue: unsupported output rows " + std::to_string(rows) +
                             ", m " + std::to_string(m) + " (m a multiple of " +
                             std::to_string(per_vec) +
                             ", out and the weight scales 16-byte aligned)");
  const int64_t total = rows * (m / per_vec);
  const unsigned blocks = unsigned(std::min((total + kThreads - 1) / kThreads, kMaxBlocks));
  auto* o = static_cast<uint4*>(out);
  if (f32_out)
    scale_output_kernel<float>
        <<<blocks, kThreads, 0, stream>>>(o, row_scale, col_scale, bias, rows, m);
  else
    scale_output_kernel<bf16>
        <<<blocks, kThreads, 0, stream>>>(o, row_scale, col_scale, bias, rows, m);
  check_launch("fp8 scale epilogue");
}

}  // namespace nc::cuda

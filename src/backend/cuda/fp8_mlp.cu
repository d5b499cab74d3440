// The fused middle of the FP8 gated MLP (fp8_kernels.h: fp8_silu_mul_quantize): the gate/up
// projection's scale epilogue, SiLU-and-mul and the down projection's activation quantiser in one
// pass, where the unfused path runs fp8_scale_output, silu_and_mul and fp8_quantize_rows.
//
// One 256-thread block per row, 16-byte vectors (8 values) a thread per step. Every value is
// computed with the operations, and roundings, of the three kernels it replaces: the gate and up
// sums scaled as (sum * s_x) * s_w and rounded to bf16 (fp8_epilogue.cu), silu(g) * u in float32
// rounded to bf16 (FlashInfer's act_and_mul with act.cuh's silu), then the row's scale from the
// max |a| and each code e4m3(a / s) (fp8_quant.cu). So its codes and scales equal the unfused
// path's bit for bit. The row's activations wait in shared memory (I bf16 values) between the
// max and the conversion, so gate_up is read once.
#include <cuda_bf16.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "backend/cuda/act.cuh"
#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/fp8_device.cuh"
#include "backend/cuda/fp8_kernels.h"

namespace nc::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 256;

__device__ __forceinline__ void load_scales8(const float* p, float s[8]) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(p));
  const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
  s[0] = a.x, s[1] = a.y, s[2] = a.z, s[3] = a.w, s[4] = b.x, s[5] = b.y, s[6] = b.z, s[7] = b.w;
}

// bf16((sum * rs) * cs), never contracted into a fused multiply-add (fp8_scale_output's value).
__device__ __forceinline__ float scaled_bf16(float sum, float rs, float cs) {
  return __bfloat162float(__float2bfloat16(__fmul_rn(__fmul_rn(sum, rs), cs)));
}

__global__ void __launch_bounds__(kThreads)
    silu_mul_quantize_kernel(const bf16* __restrict__ gate_up, int inter,
                             const float* __restrict__ row_scale,
                             const float* __restrict__ col_scale,
                             const float* __restrict__ input_scale, uint8_t* __restrict__ codes,
                             float* __restrict__ scales) {
  extern __shared__ uint4 act[];  // the row's activations, bf16, inter / 8 vectors
  const int64_t r = blockIdx.x;
  const int vecs = inter / 8;
  const uint4* gate = reinterpret_cast<const uint4*>(gate_up + r * 2 * inter);
  const uint4* up = gate + vecs;
  const float rs = __ldg(row_scale + r);
  float amax = 0.0f;
  for (int c = threadIdx.x; c < vecs; c += kThreads) {
    float g[8], u[8], gs[8], us[8], a[8];
    unpack8(__ldg(gate + c), g);
    unpack8(__ldg(up + c), u);
    load_scales8(col_scale + c * 8, gs);
    load_scales8(col_scale + inter + c * 8, us);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float gi = scaled_bf16(g[i], rs, gs[i]), ui = scaled_bf16(u[i], rs, us[i]);
      a[i] = __bfloat162float(__float2bfloat16(silu(gi) * ui));
      amax = fmaxf(amax, fabsf(a[i]));
    }
    act[c] = pack8(a);
  }
  float s = __ldg(input_scale);
  if (!(s > 0)) s = fp8_dev::dynamic_scale(fp8_dev::block_max<kThreads>(amax));
  if (threadIdx.x == 0) scales[r] = s;
  // Each thread reads back only the vectors it wrote: no barrier needed.
  uint2* out = reinterpret_cast<uint2*>(codes + r * inter);
  for (int c = threadIdx.x; c < vecs; c += kThreads) {
    float a[8];
    unpack8(act[c], a);
    out[c] = fp8_dev::codes8(a, s);
  }
}

}  // namespace

int64_t fp8_silu_mul_quantize_max_inter() {
  return int64_t(fp8_dev::max_dynamic_smem()) / 2 / 8 * 8;
}

void fp8_silu_mul_quantize(const void* gate_up, int64_t rows, int64_t inter, const float* row_scale,
                           const float* col_scale, const float* input_scale, uint8_t* codes,
                           float* scales, cudaStream_t stream) {
  const auto aligned = [](const void* p, int a) { return reinterpret_cast<uintptr_t>(p) % a == 0; };
  if (rows < 1 || rows > int64_t(0x7fffffff) || inter < 8 || inter % 8 != 0 ||
      inter > fp8_silu_mul_quantize_max_inter() || !aligned(gate_up, 16) ||
      !aligned(col_scale, 16) || !aligned(codes, 8))
    throw std::runtime_error("fp8 silu_mul_quantize: unsupported rows " + std::to_string(rows) +
                             ", inter " + std::to_string(inter) +
                             " (a multiple of 8 whose row fits shared memory; gate_up and the "
                             "weight scales 16-byte aligned, codes 8-byte aligned)");
  const int smem = int(inter * 2);
  static std::atomic<int> granted[fp8_dev::kMaxDevices];
  fp8_dev::allow_dynamic_smem(silu_mul_quantize_kernel, smem, granted, "fp8 silu_mul_quantize");
  silu_mul_quantize_kernel<<<unsigned(rows), kThreads, smem, stream>>>(
      static_cast<const bf16*>(gate_up), int(inter), row_scale, col_scale, input_scale, codes,
      scales);
  check_launch("fp8 silu_mul_quantize");
}

}  // namespace nc::cuda

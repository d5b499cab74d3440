// The residual add, RMSNorm and FP8 activation quantiser in one pass (fp8_kernels.h:
// fp8_add_rmsnorm_quantize), where the unfused path runs add_rmsnorm (FlashInfer's fused
// add-RMSNorm) and then fp8_quantize_rows over its output.
//
// One 256-thread block per row, 8 values (16 bytes of bf16) a thread per step. The sum
// x + residual is kept in float32 for the norm, as FlashInfer's kernel keeps it, and stored
// rounded to bf16 as the new residual; the normalised value is rounded to bf16 (written back to x,
// add_rmsnorm's contract) and that bf16 value is what the quantiser sees, with fp8_quant.cu's
// rule. The sum of squares is reduced in another order than FlashInfer's, so a normalised value
// may differ from add_rmsnorm's by one bf16 rounding step (and then rarely its code by one step).
// The row's float32 sums wait in shared memory (k floats) between the passes.
#include <cuda_bf16.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/fp8_device.cuh"
#include "backend/cuda/fp8_kernels.h"

namespace nc::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    add_rmsnorm_quantize_kernel(bf16* __restrict__ x, bf16* __restrict__ residual,
                                const bf16* __restrict__ weight, float eps, int k,
                                const float* __restrict__ input_scale, uint8_t* __restrict__ codes,
                                float* __restrict__ scales) {
  extern __shared__ float4 sums[];  // the row's x + residual, float32, k / 4 vectors
  const int64_t r = blockIdx.x;
  const int vecs = k / 8;
  uint4* xr = reinterpret_cast<uint4*>(x + r * k);
  uint4* rr = reinterpret_cast<uint4*>(residual + r * k);
  float ss = 0.0f;
  for (int c = threadIdx.x; c < vecs; c += kThreads) {
    float a[8], b[8];
    unpack8(xr[c], a);
    unpack8(rr[c], b);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      a[i] += b[i];
      ss += a[i] * a[i];
    }
    rr[c] = pack8(a);
    sums[2 * c] = make_float4(a[0], a[1], a[2], a[3]);
    sums[2 * c + 1] = make_float4(a[4], a[5], a[6], a[7]);
  }
  const float rms_rcp = rsqrtf(fp8_dev::block_sum<kThreads>(ss) / float(k) + eps);
  // Each thread reads back only the vectors it wrote; the block reductions below are the only
  // barriers needed (their shared arrays are written once).
  float amax = 0.0f;
  for (int c = threadIdx.x; c < vecs; c += kThreads) {
    float w[8], y[8];
    unpack8(__ldg(reinterpret_cast<const uint4*>(weight) + c), w);
    const float4 lo = sums[2 * c], hi = sums[2 * c + 1];
    const float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      y[i] = __bfloat162float(__float2bfloat16(v[i] * rms_rcp * w[i]));
      amax = fmaxf(amax, fabsf(y[i]));
    }
    xr[c] = pack8(y);
    sums[2 * c] = make_float4(y[0], y[1], y[2], y[3]);  // the rounded values, for the codes
    sums[2 * c + 1] = make_float4(y[4], y[5], y[6], y[7]);
  }
  float s = __ldg(input_scale);
  if (!(s > 0)) s = fp8_dev::dynamic_scale(fp8_dev::block_max<kThreads>(amax));
  if (threadIdx.x == 0) scales[r] = s;
  uint2* out = reinterpret_cast<uint2*>(codes + r * k);
  for (int c = threadIdx.x; c < vecs; c += kThreads) {
    const float4 lo = sums[2 * c], hi = sums[2 * c + 1];
    const float y[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    out[c] = fp8_dev::codes8(y, s);
  }
}

}  // namespace

int64_t fp8_add_rmsnorm_quantize_max_k() {
  return int64_t(fp8_dev::max_dynamic_smem()) / 4 / 8 * 8;
}

void fp8_add_rmsnorm_quantize(void* x, void* residual, const void* weight, float eps, int64_t rows,
                              int64_t k, const float* input_scale, uint8_t* codes, float* scales,
                              cudaStream_t stream) {
  const auto aligned = [](const void* p, int a) { return reinterpret_cast<uintptr_t>(p) % a == 0; };
  if (rows < 1 || rows > int64_t(0x7fffffff) || k < 8 || k % 8 != 0 ||
      k > fp8_add_rmsnorm_quantize_max_k() || !aligned(x, 16) || !aligned(residual, 16) ||
      !aligned(weight, 16) || !aligned(codes, 8))
    throw std::runtime_error("fp8 add_rmsnorm_quantize: unsupported rows " + std::to_string(rows) +
                             ", k " + std::to_string(k) +
                             " (a multiple of 8 whose row fits shared memory; x, residual and "
                             "the weight 16-byte aligned, codes 8-byte aligned)");
  const int smem = int(k * 4);
  static std::atomic<int> granted[fp8_dev::kMaxDevices];
  fp8_dev::allow_dynamic_smem(add_rmsnorm_quantize_kernel, smem, granted,
                              "fp8 add_rmsnorm_quantize");
  add_rmsnorm_quantize_kernel<<<unsigned(rows), kThreads, smem, stream>>>(
      static_cast<bf16*>(x), static_cast<bf16*>(residual), static_cast<const bf16*>(weight), eps,
      int(k), input_scale, codes, scales);
  check_launch("fp8 add_rmsnorm_quantize");
}

}  // namespace nc::cuda

// The FP8 gated MLP with fewer kernels (fp8_gemm.h: Fp8Gemm::silu_mlp). Between the two GEMMs the
// unfused path runs gate_up's scale epilogue, silu_and_mul and down's quantiser, each a pass over
// [N, 2I] or [N, I] values; fp8_silu_mul_quantize does the three in one pass that reads gate_up's
// unscaled sums once and writes only down's codes (at decode batch 256 on Llama-3-8B's shape,
// 15 MB read and 1.8 MB written a layer instead of 61 MB moved by three launches).
#include <algorithm>

#include "backend/cuda/fp8_gemm.h"
#include "backend/cuda/fp8_kernels.h"

namespace nc::cuda_host {

bool Fp8Gemm::silu_mlp_applies(const Tensor& x, const Tensor& gate_up_w, const Tensor& down_w,
                               const Tensor& gate_up, const Tensor& out, const AddNorm* norm) {
  if (!fuse_mlp_ || (norm && !norm_fusable(x, *norm))) return false;
  for (const Tensor* t : {&x, &gate_up_w, &down_w, &gate_up, &out})
    if (!t->defined() || t->device() != Device::CUDA || t->ndim() != 2 || !t->is_contiguous())
      return false;
  if (x.dtype() != DType::BF16 || gate_up.dtype() != DType::BF16 || out.dtype() != DType::BF16 ||
      gate_up_w.dtype() != DType::F8E4M3 || down_w.dtype() != DType::F8E4M3)
    return false;
  const int64_t N = x.dim(0), H = x.dim(1), I = down_w.dim(1), M = down_w.dim(0);
  if (gate_up_w.dim(0) != 2 * I || gate_up_w.dim(1) != H || gate_up.dim(0) != N ||
      gate_up.dim(1) != 2 * I || out.dim(0) != N || out.dim(1) != M)
    return false;  // the unfused ops name what is wrong
  if (N <= gemv_max_rows_ || I % 8 != 0 || I > cuda::fp8_silu_mul_quantize_max_inter() ||
      !lt_shape_ok(H, gate_up_w, gate_up) || !lt_shape_ok(I, down_w, out))
    return false;
  // Where cuBLASLt takes outer-vector scales (not on Hopper with CUDA 13.0: fp8_gemm.h), linear()
  // rounds once; the fused form would give that up.
  const int64_t R = std::min(chunk_rows(H), chunk_rows(I)), last = N - (N - 1) / R * R;
  if (plan_for(Fp8Path::LtOuter, std::min(N, R), 2 * I, H, false, false).ok ||
      plan_for(Fp8Path::LtOuter, std::min(N, R), M, I, false, false).ok)
    return false;
  for (int64_t n : {std::min(N, R), last})
    if (!plan_for(Fp8Path::LtEpilogue, n, 2 * I, H, false, false).ok ||
        !plan_for(Fp8Path::LtEpilogue, n, M, I, false, false).ok)
      return false;
  return true;
}

bool Fp8Gemm::silu_mlp(const Tensor& x, const Tensor& gate_up_w, const Tensor& down_w,
                       Tensor gate_up, Tensor out, const AddNorm* norm) {
  if (!silu_mlp_applies(x, gate_up_w, down_w, gate_up, out, norm)) return false;
  ensure_scratch();
  const int64_t N = x.dim(0), H = x.dim(1), I = down_w.dim(1), M = down_w.dim(0);
  const int64_t R = std::min(chunk_rows(H), chunk_rows(I));
  uint8_t* codes = static_cast<uint8_t*>(scratch_.data());
  float* x_scales = reinterpret_cast<float*>(codes + kScratchCodeBytes);
  float* act_scales = x_scales + kMaxChunkRows;
  const float* gu_scale = fp8_row_scales(gate_up_w);  // weight scales, then the input scale
  const float* down_scale = fp8_row_scales(down_w);
  const cudaStream_t s = ctx_->stream;
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    const int64_t n = std::min(R, N - r0);
    const auto* xr = static_cast<const uint8_t*>(x.data()) + r0 * H * 2;
    auto* gur = static_cast<uint8_t*>(gate_up.data()) + r0 * 2 * I * 2;
    auto* outr = static_cast<uint8_t*>(out.data()) + r0 * M * 2;
    const auto* guw = static_cast<const uint8_t*>(gate_up_w.data());
    const auto* dw = static_cast<const uint8_t*>(down_w.data());
    Chunk gu{xr, guw, gu_scale, gu_scale + 2 * I, nullptr, gur, n, 2 * I, H, false, x_scales};
    if (norm) gu.residual = static_cast<uint8_t*>(norm->residual.data()) + r0 * H * 2;
    gu.norm = norm;
    quantize_chunk(gu, codes, x_scales);
    run_lt(gu, plan_for(Fp8Path::LtEpilogue, n, 2 * I, H, false, false), Fp8Path::LtEpilogue,
           /*scale=*/false);
    k_call([&] {
      cuda::fp8_silu_mul_quantize(gur, n, I, x_scales, gu_scale, down_scale + M, codes, act_scales,
                                  s);
    });
    const Chunk down{nullptr, dw, down_scale, down_scale + M, nullptr,   outr,
                     n,       M,  I,          false,          act_scales};
    run_lt(down, plan_for(Fp8Path::LtEpilogue, n, M, I, false, false), Fp8Path::LtEpilogue,
           /*scale=*/true);
  }
  return true;
}

}  // namespace nc::cuda_host

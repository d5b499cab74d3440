// The device side of the CUDA FP8 linear (fp8_gemm.h): the activation quantiser, a GEMV-style
// FP8 product for few rows, a bias add and the scale epilogue of the scalar-scaled cuBLASLt path
// (fp8_quant.cu, gemv_fp8.cu, fp8_epilogue.cu). The arithmetic is
// backend/fp8_weight.h's; plain host functions, so callers compile with the ordinary C++ compiler.
//
// Contract:
//   - fp8_quantize_rows: for each row r of x (bf16 [rows, k], contiguous), s = *input_scale where
//     that is > 0, else max_k |x[r, k]| / 448 (1 for an all-zero row); scales[r] = s and
//     codes[r, k] = e4m3(x[r, k] / s), rounded to nearest even and saturated (__NV_SATFINITE,
//     core/fp8.h's f32_to_e4m3). The division and the amax are the float32 operations of
//     fp8_activation_scale and cpu_fp8_linear (IEEE division, not a reciprocal), so codes and
//     scales equal the CPU's bit for bit. input_scale is a device pointer (the packed weight's).
//   - fp8_gemv: out[n, m] = (sum_k e4m3(a[n, k]) * e4m3(w[m, k])) * a_scale[n] * w_scale[m]
//     (+ bias[m]) for n < rows, float32 products and sums (exact products: e4m3 values multiply
//     exactly in float32), each weight row read once per group of up to 8 activation rows. a, w:
//     e4m3 codes [rows, k], [m, k]; out [rows, m] bf16, or float32 when f32_out; bias (null: none)
//     [m] in out's dtype. Any rows >= 1 and k >= 1; 16-byte loads where k % 16 == 0 and a, w are
//     16-byte aligned, byte loads otherwise.
//   - fp8_add_bias: out[n, m] += bias[m] (out's dtype), for cuBLASLt plans that cannot fuse it.
//   - fp8_scale_output: in place, out[n, m] = (out[n, m] * row_scale[n]) * col_scale[m]
//     (+ bias[m]) for n < rows, in float32 with each operation rounded as written (no fused
//     multiply-add), rounded once to out's type (bf16, or float32 when f32_out); bias (null: none)
//     [m] in out's dtype. Needs m a multiple of 8 (bf16) or 4 (float32) and out and col_scale
//     16-byte aligned (16-byte vectors); throws otherwise.
//   - fp8_silu_mul_quantize: the FP8 gated MLP's middle in one pass (fp8_mlp.cu). gate_up: bf16
//     [rows, 2 inter], the gate/up projection's unscaled sums as cuBLASLt wrote them; row_scale
//     [rows] its activation scales, col_scale [2 inter] its weight scales. Each gate and up value
//     becomes bf16((sum * row_scale[n]) * col_scale[m]) (fp8_scale_output's value), the activation
//     a = bf16(silu(gate) * up) (silu_and_mul's), and the row is quantised as fp8_quantize_rows
//     quantises it with `input_scale` (the down projection's): codes [rows, inter], scales
//     [rows]. Bit for bit the three unfused kernels' codes and scales. Needs inter a multiple of
//     8 and at most fp8_silu_mul_quantize_max_inter() (the row waits in shared memory), gate_up
//     and col_scale 16-byte aligned, codes 8-byte aligned; throws otherwise.
//   - fp8_add_rmsnorm_quantize: add_rmsnorm and the activation quantiser in one pass
//     (fp8_norm.cu). For each row: residual += x (bf16 stored; the float32 sum is normalised),
//     x = bf16(sum * rsqrt(mean(sum^2) + eps) * weight) (add_rmsnorm's contract), then x's row
//     quantised as fp8_quantize_rows quantises it (the same codes and scales for the same x).
//     x, residual: bf16 [rows, k]; weight: bf16 [k]. Needs k a multiple of 8 and at most
//     fp8_add_rmsnorm_quantize_max_k() (the row's sums wait in shared memory), x, residual and
//     weight 16-byte aligned, codes 8-byte aligned; throws otherwise.
//   - Work is enqueued on `stream`; a failed launch or a bad size throws std::runtime_error.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace nc::cuda {

void fp8_quantize_rows(const void* x, int64_t rows, int64_t k, const float* input_scale,
                       uint8_t* codes, float* scales, cudaStream_t stream);

void fp8_gemv(const uint8_t* a, const float* a_scale, const uint8_t* w, const float* w_scale,
              const void* bias, void* out, bool f32_out, int64_t rows, int64_t m, int64_t k,
              cudaStream_t stream);

void fp8_add_bias(void* out, const void* bias, bool f32_out, int64_t rows, int64_t m,
                  cudaStream_t stream);

void fp8_silu_mul_quantize(const void* gate_up, int64_t rows, int64_t inter, const float* row_scale,
                           const float* col_scale, const float* input_scale, uint8_t* codes,
                           float* scales, cudaStream_t stream);
int64_t fp8_silu_mul_quantize_max_inter();  // on the current device

void fp8_add_rmsnorm_quantize(void* x, void* residual, const void* weight, float eps, int64_t rows,
                              int64_t k, const float* input_scale, uint8_t* codes, float* scales,
                              cudaStream_t stream);
int64_t fp8_add_rmsnorm_quantize_max_k();  // on the current device

void fp8_scale_output(void* out, bool f32_out, const float* row_scale, const float* col_scale,
                      const void* bias, int64_t rows, int64_t m, cudaStream_t stream);

}  // namespace nc::cuda

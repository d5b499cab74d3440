// The CPU's FP8 linear (backend/fp8_weight.h gives the arithmetic): the reference the GPU's FP8
// GEMM is checked against.
//
// Contract:
//   - out[n, m] = (sum_k a[n, k] * b[m, k]) * s_a[n] * s_w[m], where b[m, k] is weight code
//     (m, k) decoded exactly (e4m3_to_f32), s_w the weight's row scales, s_a[n] the activation
//     scale of x row n (fp8_activation_scale: the weight's static input scale, or max|x_n| / 448)
//     and a[n, k] = e4m3_to_f32(f32_to_e4m3(x[n, k] / s_a[n])): e4m3 rounding of both operands
//     emulated exactly. Every product of two e4m3 values is exact in float32; the sum is float32,
//     in a fixed order that depends on K only (8 interleaved partial sums, added pairwise), so a
//     row's result never depends on the other rows, N, or the thread split (batch invariance).
//   - The weight codes are decoded through a 256-entry table, a strip of rows at a time, and
//     every x row passes over the strip while it is in cache. Threaded over weight rows.
//   - Errors: nc::Error when w is not a packed F8E4M3 [M, K] weight or x has another width.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace nc {

class ThreadPool;

// x: float32 [N, K] row-major; w: a packed FP8 weight [M, K] (fp8_weight.h); out: [N, M].
void cpu_fp8_linear(const float* x, int64_t N, int64_t K, const Tensor& w, float* out,
                    ThreadPool& pool);

}  // namespace nc

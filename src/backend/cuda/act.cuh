// The activation functions of the gated MLPs, shared by the standalone kernels (ops.cu) and the
// fused down projection (gemv.cu), so that both round the same float32 values.
#pragma once

namespace nc::cuda {

__device__ __forceinline__ float silu(const float& x) {
  return x / (1.0f + __expf(-x));
}

// PyTorch's gelu(approximate="tanh"), in float32 with the accurate tanhf.
__device__ __forceinline__ float gelu_tanh(const float& x) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

}  // namespace nc::cuda

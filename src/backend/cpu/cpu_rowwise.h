// The CPU backend's row-wise ops: norms, the fused q/k/v split with norm and rope, and the gated
// activations. Float32 host tensors, contiguous; each row is computed on one thread in a fixed
// order, so a row's result does not depend on the others (batch invariant) nor on the thread
// count. Bad shapes, dtypes or positions give an nc::Error naming them.
#pragma once
#include <cstdint>
#include <functional>

#include "core/tensor.h"

namespace nc {

// The data of a float32, contiguous host tensor; an nc::Error naming `what` otherwise.
float* cpu_f32(const Tensor& t, const char* what);

// fn(begin, end) over rows [0, n) of `width` values each, split across the global pool's threads
// when the op is large enough to pay for waking them. Rows are independent, so the split never
// changes a result.
void cpu_for_rows(int64_t n, int64_t width, const std::function<void(int64_t, int64_t)>& fn);

// out = x / rms(x) * weight, per row of x's last dimension.
void cpu_rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out);
// residual += x, then x = rmsnorm(residual) (Backend::add_rmsnorm).
void cpu_add_rmsnorm(Tensor x, Tensor residual, const Tensor& weight, float eps);
// Backend::qkv_split_norm_rope: the same float operations in the same order as cpu_rmsnorm over
// heads followed by cpu_rope, so the results are bit-identical to that pair.
void cpu_qkv_split_norm_rope(const Tensor& qkv, const Tensor& q_norm, const Tensor& k_norm,
                             float eps, const Tensor& positions, const Tensor& cos_sin,
                             int head_dim, Tensor q, Tensor k, Tensor v);
// out = act(gate) * up over gate_up = [gate | up] per row: SiLU, and PyTorch's tanh GELU.
void cpu_silu_and_mul(const Tensor& gate_up, Tensor out);
void cpu_gelu_tanh_and_mul(const Tensor& gate_up, Tensor out);

}  // namespace nc

// The CPU backend's row-wise ops (cpu_rowwise.h) and the standalone rope of cpu_ops.h.
#include "backend/cpu/cpu_rowwise.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <tuple>

#include "backend/cpu/cpu_ops.h"
#include "backend/op_checks.h"
#include "core/thread_pool.h"

namespace nc {

namespace {

// Row-wise ops over fewer values than this run on the caller's thread: waking the pool would
// cost more than it saves (an estimate; these ops are a few percent of a step).
constexpr int64_t kParallelMinValues = 1 << 16;

void rmsnorm_row(const float* x, const float* w, float eps, int64_t n, float* out) {
  float ss = 0.0f;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / float(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = w[i] * (x[i] * inv);
}

// Rotate-half rope of one head of 2 * half values in place; c, s: the position's cos and sin.
void rope_head(float* v, const float* c, const float* s, int half) {
  for (int d = 0; d < half; ++d) {
    const float x1 = v[d], x2 = v[d + half];
    v[d] = x1 * c[d] - x2 * s[d];
    v[d + half] = x2 * c[d] + x1 * s[d];
  }
}

}  // namespace

void cpu_for_rows(int64_t n, int64_t width, const std::function<void(int64_t, int64_t)>& fn) {
  if (n * width < kParallelMinValues || n < 2) {
    fn(0, n);
    return;
  }
  ThreadPool::global().parallel_for(n, fn);
}

float* cpu_f32(const Tensor& t, const char* what) {
  t.expect_dtype(DType::F32, what);
  t.expect_device(Device::CPU, what);
  t.expect_contiguous(what);
  return t.ptr<float>();
}

void cpu_rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& cos_sin, int head_dim) {
  const int64_t T = positions.numel(), max_pos = cos_sin.dim(0);
  NC_CHECK(cos_sin.dim(1) == head_dim, "rope: cos/sin table has {} columns for head_dim {}",
           cos_sin.dim(1), head_dim);
  const int32_t* pos = positions.ptr<int32_t>();
  const float* cs = cpu_f32(cos_sin, "rope table");
  for (Tensor* t : {&q, &k}) {
    const int64_t heads = t->dim(-1) / head_dim;
    NC_CHECK(t->dim(0) == T, "rope: {} rows for {} positions", t->dim(0), T);
    float* p = cpu_f32(*t, "rope");
    const int half = head_dim / 2;
    for (int64_t i = 0; i < T; ++i) {
      NC_CHECK(pos[i] >= 0 && pos[i] < max_pos, "rope: position {} outside [0, {})", pos[i],
               max_pos);
      const float* c = cs + int64_t(pos[i]) * head_dim;
      const float* s = c + half;
      for (int64_t h = 0; h < heads; ++h) rope_head(p + (i * heads + h) * head_dim, c, s, half);
    }
  }
}

void cpu_rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) {
  const int64_t H = x.dim(-1), N = x.numel() / H;
  weight.expect_shape({H}, "rmsnorm weight");
  const float *px = cpu_f32(x, "rmsnorm"), *pw = cpu_f32(weight, "rmsnorm");
  float* po = cpu_f32(out, "rmsnorm");
  cpu_for_rows(N, H, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) rmsnorm_row(px + r * H, pw, eps, H, po + r * H);
  });
}

void cpu_add_rmsnorm(Tensor x, Tensor residual, const Tensor& weight, float eps) {
  const int64_t H = x.dim(-1), N = x.numel() / H;
  residual.expect_shape(x.shape(), "add_rmsnorm residual");
  float *px = cpu_f32(x, "add_rmsnorm"), *pr = cpu_f32(residual, "add_rmsnorm");
  const float* pw = cpu_f32(weight, "add_rmsnorm");
  cpu_for_rows(N, H, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0 * H; i < r1 * H; ++i) pr[i] += px[i];
    for (int64_t r = r0; r < r1; ++r) rmsnorm_row(pr + r * H, pw, eps, H, px + r * H);
  });
}

// Copies, then normalises in place, then rotates (see the header).
void cpu_qkv_split_norm_rope(const Tensor& qkv, const Tensor& q_norm, const Tensor& k_norm,
                             float eps, const Tensor& positions, const Tensor& cos_sin,
                             int head_dim, Tensor q, Tensor k, Tensor v) {
  const int64_t T = positions.numel(), D = head_dim, max_pos = cos_sin.dim(0);
  NC_CHECK(D > 0 && D % 2 == 0, "qkv_split_norm_rope: bad head_dim {}", D);
  const auto [QW, KW] =
      check_qkv_split_shapes(qkv, q_norm, k_norm, positions, cos_sin, head_dim, q, k, v);
  const float* in = cpu_f32(qkv, "qkv_split_norm_rope");
  const float* cs = cpu_f32(cos_sin, "qkv_split_norm_rope table");
  const float* qn = q_norm.defined() ? cpu_f32(q_norm, "q_norm") : nullptr;
  const float* kn = k_norm.defined() ? cpu_f32(k_norm, "k_norm") : nullptr;
  positions.expect_dtype(DType::I32, "qkv_split_norm_rope positions");
  const int32_t* pos = positions.ptr<int32_t>();
  float *pq = cpu_f32(q, "qkv_split_norm_rope q"), *pk = cpu_f32(k, "qkv_split_norm_rope k"),
        *pv = cpu_f32(v, "qkv_split_norm_rope v");
  const int half = head_dim / 2;
  for (int64_t i = 0; i < T; ++i) {
    NC_CHECK(pos[i] >= 0 && pos[i] < max_pos, "qkv_split_norm_rope: position {} outside [0, {})",
             pos[i], max_pos);
    const float* row = in + i * (QW + 2 * KW);
    const float* c = cs + int64_t(pos[i]) * D;
    std::copy_n(row + QW + KW, KW, pv + i * KW);
    for (auto [src, dst, width, norm] :
         {std::tuple{row, pq + i * QW, QW, qn}, std::tuple{row + QW, pk + i * KW, KW, kn}}) {
      std::copy_n(src, width, dst);
      for (int64_t h = 0; h < width / D; ++h) {
        float* x = dst + h * D;
        if (norm) rmsnorm_row(x, norm, eps, D, x);
        rope_head(x, c, c + half, half);
      }
    }
  }
}

void cpu_silu_and_mul(const Tensor& gate_up, Tensor out) {
  const int64_t T = gate_up.dim(0), I = gate_up.dim(1) / 2;
  out.expect_shape({T, I}, "silu_and_mul output");
  const float* g = cpu_f32(gate_up, "silu_and_mul");
  float* o = cpu_f32(out, "silu_and_mul");
  cpu_for_rows(T, I, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t i = 0; i < I; ++i) {
        const float a = g[t * 2 * I + i], b = g[t * 2 * I + I + i];
        o[t * I + i] = a / (1.0f + std::exp(-a)) * b;
      }
  });
}

void cpu_gelu_tanh_and_mul(const Tensor& gate_up, Tensor out) {
  const int64_t T = gate_up.dim(0), I = gate_up.dim(1) / 2;
  out.expect_shape({T, I}, "gelu_tanh_and_mul output");
  const float* g = cpu_f32(gate_up, "gelu_tanh_and_mul");
  float* o = cpu_f32(out, "gelu_tanh_and_mul");
  // PyTorch's gelu(approximate="tanh"), in double for a reference result.
  const double k = std::sqrt(2.0 / std::numbers::pi);
  cpu_for_rows(T, I, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t i = 0; i < I; ++i) {
        const double a = g[t * 2 * I + i], b = g[t * 2 * I + I + i];
        o[t * I + i] = float(0.5 * a * (1.0 + std::tanh(k * (a + 0.044715 * a * a * a))) * b);
      }
  });
}

}  // namespace nc

// The CPU backend's mixture-of-experts ops (backend/cpu/cpu_moe.h).
#include "backend/cpu/cpu_moe.h"

#include <cmath>
#include <vector>

#include "backend/cpu/cpu_matmul.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace nc {
namespace {

template <typename T>
T* host_ptr(const Tensor& t, DType dt, const char* what) {
  t.expect_dtype(dt, what);
  t.expect_device(Device::CPU, what);
  t.expect_contiguous(what);
  return t.ptr<T>();
}

// Expert e's [rows, cols] matrix of a stacked [E, rows, cols] weight.
CpuWeightView expert_view(const Tensor& w, int64_t e, const char* what) {
  w.expect_device(Device::CPU, what);
  w.expect_contiguous(what);
  NC_CHECK(w.ndim() == 3, "{}: expert weights of shape {} are not [experts, rows, cols]", what,
           shape_str(w.shape()));
  const int64_t rows = w.dim(1), cols = w.dim(2);
  const size_t bytes = dtype_bytes(w.dtype(), rows * cols);
  return CpuWeightView{w.dtype(), rows, cols, static_cast<const uint8_t*>(w.data()) + e * bytes};
}

// The (token, slot) pairs of each expert, in token order: pairs[offsets[e] .. offsets[e + 1]).
struct ExpertGroups {
  std::vector<int64_t> offsets;
  std::vector<int64_t> pairs;  // t * k + slot
};

ExpertGroups group_by_expert(const int32_t* ids, int64_t T, int64_t k, int64_t E) {
  ExpertGroups g;
  g.offsets.assign(size_t(E + 1), 0);
  for (int64_t i = 0; i < T * k; ++i) {
    NC_CHECK(ids[i] >= 0 && ids[i] < E, "moe_experts: expert id {} of token {} outside [0, {})",
             ids[i], i / k, E);
    ++g.offsets[size_t(ids[i]) + 1];
  }
  for (int64_t e = 0; e < E; ++e) g.offsets[size_t(e + 1)] += g.offsets[size_t(e)];
  std::vector<int64_t> next(g.offsets.begin(), g.offsets.end() - 1);
  g.pairs.resize(size_t(T * k));
  for (int64_t i = 0; i < T * k; ++i) g.pairs[size_t(next[size_t(ids[i])]++)] = i;
  return g;
}

void silu_glu(const float* gate_up, int64_t n, int64_t I, float* out) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < I; ++i) {
      const float a = gate_up[r * 2 * I + i], b = gate_up[r * 2 * I + I + i];
      out[r * I + i] = a / (1.0f + std::exp(-a)) * b;
    }
}

}  // namespace

void cpu_moe_route(const Tensor& logits, const Tensor& bias, const MoeRouting& r, Tensor ids,
                   Tensor weights) {
  r.validate();
  const int64_t T = logits.dim(0), k = r.top_k;
  logits.expect_shape({T, r.num_experts}, "moe_route logits");
  ids.expect_shape({T, k}, "moe_route ids");
  weights.expect_shape({T, k}, "moe_route weights");
  const float* b = nullptr;
  if (bias.defined()) {
    NC_CHECK(r.has_bias(), "moe_route: a bias is given for softmax routing, which has none");
    bias.expect_shape({r.num_experts}, "moe_route bias");
    b = host_ptr<float>(bias, DType::F32, "moe_route bias");
  }
  route_tokens(host_ptr<float>(logits, DType::F32, "moe_route logits"), T, b, r,
               host_ptr<int32_t>(ids, DType::I32, "moe_route ids"),
               host_ptr<float>(weights, DType::F32, "moe_route weights"));
}

void cpu_moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                     const Tensor& gate_up, const Tensor& down, Tensor out) {
  NC_CHECK(x.ndim() == 2 && ids.ndim() == 2 && gate_up.ndim() == 3 && down.ndim() == 3,
           "moe_experts: x {}, ids {}, gate_up {}, down {}: expected [T, H], [T, k], [E, 2I, H], "
           "[E, H, I]",
           shape_str(x.shape()), shape_str(ids.shape()), shape_str(gate_up.shape()),
           shape_str(down.shape()));
  const int64_t T = x.dim(0), H = x.dim(1), k = ids.dim(-1), E = gate_up.dim(0);
  const int64_t I = gate_up.dim(1) / 2;
  gate_up.expect_shape({E, 2 * I, H}, "moe_experts gate_up");
  down.expect_shape({E, H, I}, "moe_experts down");
  ids.expect_shape({T, k}, "moe_experts ids");
  weights.expect_shape({T, k}, "moe_experts weights");
  out.expect_shape({T, H}, "moe_experts output");
  const float* px = host_ptr<float>(x, DType::F32, "moe_experts x");
  const float* pw = host_ptr<float>(weights, DType::F32, "moe_experts weights");
  float* po = host_ptr<float>(out, DType::F32, "moe_experts output");
  const ExpertGroups g =
      group_by_expert(host_ptr<int32_t>(ids, DType::I32, "moe_experts ids"), T, k, E);
  std::vector<float> result(size_t(T * k * H));  // expert output of pair t * k + slot
  std::vector<float> xs, gu, act, ys;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t begin = g.offsets[size_t(e)], n = g.offsets[size_t(e + 1)] - begin;
    if (n == 0) continue;
    xs.resize(size_t(n * H));
    for (int64_t r = 0; r < n; ++r) {  // permute: the expert's tokens, contiguous
      const float* src = px + (g.pairs[size_t(begin + r)] / k) * H;
      std::copy(src, src + H, xs.begin() + r * H);
    }
    gu.resize(size_t(n * 2 * I));
    act.resize(size_t(n * I));
    ys.resize(size_t(n * H));
    cpu_matmul(xs.data(), n, expert_view(gate_up, e, "moe_experts gate_up"), gu.data(),
               ThreadPool::global());
    silu_glu(gu.data(), n, I, act.data());
    cpu_matmul(act.data(), n, expert_view(down, e, "moe_experts down"), ys.data(),
               ThreadPool::global());
    for (int64_t r = 0; r < n; ++r)  // un-permute into the pair's own row
      std::copy(ys.begin() + r * H, ys.begin() + (r + 1) * H,
                result.begin() + g.pairs[size_t(begin + r)] * H);
  }
  // Each token's slots summed in slot order, whatever order the experts ran in.
  for (int64_t t = 0; t < T; ++t) {
    float* o = po + t * H;
    std::fill(o, o + H, 0.0f);
    for (int64_t j = 0; j < k; ++j) {
      const float w = pw[t * k + j];
      const float* y = result.data() + (t * k + j) * H;
      for (int64_t h = 0; h < H; ++h) o[h] += w * y[h];
    }
  }
}

}  // namespace nc

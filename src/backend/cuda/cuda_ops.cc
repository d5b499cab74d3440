// Elementwise ops and host<->device copies of the CUDA backend (cuda_ops.h).
#include "backend/cuda/cuda_ops.h"

#include <cmath>
#include <cstdint>
#include <utility>

#include "backend/cuda/kernels.h"

namespace nc::cuda_host {

Tensor CudaOps::upload(const HostTensor& t) {
  Tensor out = device_alloc(ctx_, t.shape, DType::BF16);
  NC_CHECK(int64_t(t.data.size()) == out.numel(), "upload: {} values for shape {}", t.data.size(),
           shape_str(t.shape));
  std::vector<uint16_t> bf(t.data.size());
  for (size_t i = 0; i < bf.size(); ++i) bf[i] = f32_to_bf16(t.data[i]);
  // From pageable memory the call returns once `bf` has been staged, so it may go out of scope.
  cuda_check(cudaMemcpyAsync(out.data(), bf.data(), out.nbytes(), cudaMemcpyHostToDevice, s()),
             "upload");
  return out;
}

void CudaOps::copy_from_host(Tensor dst, const void* src) {
  expect_cuda(dst, "copy_from_host");
  dst.expect_contiguous("copy_from_host");
  if (dst.nbytes() == 0) return;
  cuda_check(cudaMemcpyAsync(dst.data(), src, dst.nbytes(), cudaMemcpyHostToDevice, s()),
             "copy_from_host");
}

std::vector<float> CudaOps::to_host_f32(const Tensor& t) {
  expect_cuda(t, "to_host_f32");
  t.expect_contiguous("to_host_f32");
  std::vector<float> out(size_t(t.numel()));
  if (out.empty()) return out;
  if (t.dtype() == DType::F32) {
    cuda_check(cudaMemcpyAsync(out.data(), t.data(), t.nbytes(), cudaMemcpyDeviceToHost, s()),
               "to_host_f32");
  } else {
    NC_CHECK(t.dtype() == DType::BF16 || t.dtype() == DType::F16,
             "to_host_f32: dtype {} is not a float type", dtype_name(t.dtype()));
    Tensor tmp = device_alloc(ctx_, t.shape(), DType::F32);
    k_call([&] {
      if (t.dtype() == DType::BF16)
        cuda::bf16_to_f32(t.data(), tmp.ptr<float>(), t.numel(), s());
      else
        cuda::f16_to_f32(t.data(), tmp.ptr<float>(), t.numel(), s());
    });
    cuda_check(cudaMemcpyAsync(out.data(), tmp.data(), tmp.nbytes(), cudaMemcpyDeviceToHost, s()),
               "to_host_f32");
  }
  ctx_->synchronize();
  return out;
}

void CudaOps::embedding(const Tensor& table, const Tensor& ids, Tensor out) {
  const int64_t V = table.dim(0), H = table.dim(1), T = ids.numel();
  expect_bf16(table, "embedding table");
  expect_i32(ids, "embedding ids");
  out.expect_shape({T, H}, "embedding output");
  expect_bf16(out, "embedding output");
  k_call([&] { cuda::embedding_bf16(table.data(), ids.ptr<int32_t>(), out.data(), T, H, V, s()); });
}

void CudaOps::rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) {
  const int64_t H = x.dim(-1), N = x.numel() / std::max<int64_t>(H, 1);
  weight.expect_shape({H}, "rmsnorm weight");
  out.expect_shape(x.shape(), "rmsnorm output");
  expect_bf16(x, "rmsnorm input");
  expect_bf16(weight, "rmsnorm weight");
  expect_bf16(out, "rmsnorm output");
  k_call(
      [&] { cuda::rmsnorm_bf16(x.data(), weight.data(), out.data(), int(N), int(H), eps, s()); });
}

void CudaOps::add_rmsnorm(Tensor x, Tensor residual, const Tensor& weight, float eps) {
  const int64_t H = x.dim(-1), N = x.numel() / std::max<int64_t>(H, 1);
  residual.expect_shape(x.shape(), "add_rmsnorm residual");
  weight.expect_shape({H}, "add_rmsnorm weight");
  expect_bf16(x, "add_rmsnorm input");
  expect_bf16(residual, "add_rmsnorm residual");
  expect_bf16(weight, "add_rmsnorm weight");
  k_call([&] {
    cuda::add_rmsnorm_bf16(x.data(), residual.data(), weight.data(), int(N), int(H), eps, s());
  });
}

void CudaOps::rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& cos_sin,
                   int head_dim) {
  const int64_t T = positions.numel();
  expect_i32(positions, "rope positions");
  NC_CHECK(head_dim > 0 && head_dim % 2 == 0, "rope: bad head_dim {}", head_dim);
  NC_CHECK(cos_sin.ndim() == 2 && cos_sin.dim(1) == head_dim,
           "rope: cos/sin table {} does not have {} columns", shape_str(cos_sin.shape()), head_dim);
  expect_cuda(cos_sin, "rope table");
  cos_sin.expect_contiguous("rope table");
  NC_CHECK(cuda::head_dim_supported(head_dim), "rope: head_dim {} not supported (64, 96, 128, 256)",
           head_dim);
  for (const Tensor* t : {static_cast<const Tensor*>(&q), static_cast<const Tensor*>(&k)}) {
    expect_bf16(*t, "rope input");
    NC_CHECK(t->dim(0) == T && t->dim(-1) % head_dim == 0,
             "rope: input {} does not hold {} rows of heads of {}", shape_str(t->shape()), T,
             head_dim);
  }
  const float* table = rope_table(cos_sin);
  k_call([&] {
    cuda::rope_bf16(q.data(), k.data(), table, positions.ptr<int32_t>(), int(T),
                    int(q.dim(-1) / head_dim), int(k.dim(-1) / head_dim), head_dim, s());
  });
}

QkvWidths CudaOps::check_qkv_split(const Tensor& qkv, const Tensor& q_norm, const Tensor& k_norm,
                                   const Tensor& positions, const Tensor& cos_sin, int head_dim,
                                   const Tensor& q, const Tensor& k, const Tensor& v) const {
  const char* what = "qkv_split_norm_rope";
  expect_i32(positions, "qkv_split_norm_rope positions");
  NC_CHECK(cuda::head_dim_supported(head_dim), "{}: head_dim {} not supported (64, 96, 128, 256)",
           what, head_dim);
  const QkvWidths widths =
      check_qkv_split_shapes(qkv, q_norm, k_norm, positions, cos_sin, head_dim, q, k, v);
  expect_cuda(cos_sin, "qkv_split_norm_rope table");
  cos_sin.expect_contiguous("qkv_split_norm_rope table");
  for (const Tensor* t : {&qkv, &q_norm, &k_norm, &q, &k, &v}) {
    if (!t->defined()) continue;  // a norm weight may be absent
    expect_bf16(*t, what);
    t->expect_contiguous(what);
    NC_CHECK(reinterpret_cast<uintptr_t>(t->data()) % 4 == 0, "{}: tensor not 4-byte aligned",
             what);
  }
  return widths;
}

void CudaOps::qkv_split_norm_rope(const Tensor& qkv, const Tensor& q_norm, const Tensor& k_norm,
                                  float eps, const Tensor& positions, const Tensor& cos_sin,
                                  int head_dim, Tensor q, Tensor k, Tensor v,
                                  const cuda::KvAppendTarget* append) {
  const auto [QW, KW] = check_qkv_split(qkv, q_norm, k_norm, positions, cos_sin, head_dim, q, k, v);
  const int64_t T = positions.numel(), D = head_dim;
  const float* table = rope_table(cos_sin);
  const void* qn = q_norm.defined() ? q_norm.data() : nullptr;
  const void* kn = k_norm.defined() ? k_norm.data() : nullptr;
  k_call([&] {
    if (append != nullptr) {
      cuda::qkv_split_norm_rope_append_bf16(qkv.data(), qn, kn, eps, positions.ptr<int32_t>(),
                                            table, int(T), int(QW / D), int(KW / D), head_dim,
                                            q.data(), k.data(), v.data(), *append, s());
    } else {
      cuda::qkv_split_norm_rope_bf16(qkv.data(), qn, kn, eps, positions.ptr<int32_t>(), table,
                                     int(T), int(QW / D), int(KW / D), head_dim, q.data(), k.data(),
                                     v.data(), s());
    }
  });
}

namespace {

// The checks of an activation-and-multiply op; returns (T, I).
std::pair<int64_t, int64_t> act_and_mul_dims(const Tensor& gate_up, const Tensor& out,
                                             const char* what) {
  const int64_t T = gate_up.dim(0), I = gate_up.dim(1) / 2;
  NC_CHECK(gate_up.dim(1) % 2 == 0, "{}: odd width {}", what, gate_up.dim(1));
  out.expect_shape({T, I}, what);
  expect_bf16(gate_up, what);
  expect_bf16(out, what);
  return {T, I};
}

}  // namespace

void CudaOps::silu_and_mul(const Tensor& gate_up, Tensor out) {
  const auto [T, I] = act_and_mul_dims(gate_up, out, "silu_and_mul");
  k_call([&] { cuda::silu_and_mul_bf16(gate_up.data(), out.data(), int(T), int(I), s()); });
}

void CudaOps::gelu_tanh_and_mul(const Tensor& gate_up, Tensor out) {
  const auto [T, I] = act_and_mul_dims(gate_up, out, "gelu_tanh_and_mul");
  k_call([&] { cuda::gelu_tanh_and_mul_bf16(gate_up.data(), out.data(), int(T), int(I), s()); });
}

void CudaOps::scale(Tensor x, float factor) {
  expect_cuda(x, "scale");
  x.expect_contiguous("scale");
  NC_CHECK(x.dtype() == DType::BF16 || x.dtype() == DType::F32, "scale: dtype {} (bf16, f32)",
           dtype_name(x.dtype()));
  k_call([&] {
    if (x.dtype() == DType::BF16)
      cuda::scale_bf16(x.data(), factor, x.numel(), s());
    else
      cuda::scale_f32(static_cast<float*>(x.data()), factor, x.numel(), s());
  });
}

void CudaOps::soft_cap(Tensor x, float cap) {
  expect_cuda(x, "soft_cap");
  x.expect_contiguous("soft_cap");
  NC_CHECK(x.dtype() == DType::F32, "soft_cap: dtype {} (f32 logits)", dtype_name(x.dtype()));
  NC_CHECK(std::isfinite(cap) && cap > 0, "soft_cap: cap {} is not > 0", cap);
  k_call([&] { cuda::soft_cap_f32(static_cast<float*>(x.data()), cap, x.numel(), s()); });
}

void CudaOps::apply_token_bitmask(Tensor logits, const Tensor& bitmask) {
  expect_cuda(logits, "apply_token_bitmask");
  expect_cuda(bitmask, "apply_token_bitmask");
  logits.expect_contiguous("apply_token_bitmask");
  bitmask.expect_contiguous("apply_token_bitmask");
  check_token_bitmask(logits, bitmask);
  k_call([&] {
    cuda::apply_token_bitmask_f32(static_cast<float*>(logits.data()), bitmask.ptr<int32_t>(),
                                  logits.dim(0), logits.dim(1), s());
  });
}

void CudaOps::copy_rows(const Tensor& src, Tensor dst) {
  dst.expect_shape(src.shape(), "copy_rows");
  NC_CHECK(src.dtype() == dst.dtype(), "copy_rows: dtypes {} and {} differ",
           dtype_name(src.dtype()), dtype_name(dst.dtype()));
  expect_cuda(src, "copy_rows");
  expect_cuda(dst, "copy_rows");
  src.expect_contiguous("copy_rows");
  dst.expect_contiguous("copy_rows");
  if (src.nbytes() == 0) return;
  cuda_check(cudaMemcpyAsync(dst.data(), src.data(), src.nbytes(), cudaMemcpyDeviceToDevice, s()),
             "copy_rows");
}

void CudaOps::add(Tensor x, const Tensor& y) {
  y.expect_shape(x.shape(), "add");
  NC_CHECK(x.dtype() == y.dtype(), "add: dtypes {} and {} differ", dtype_name(x.dtype()),
           dtype_name(y.dtype()));
  expect_cuda(x, "add");
  expect_cuda(y, "add");
  x.expect_contiguous("add");
  y.expect_contiguous("add");
  k_call([&] {
    if (x.dtype() == DType::BF16)
      cuda::add_bf16(x.data(), y.data(), x.numel(), s());
    else if (x.dtype() == DType::F32)
      cuda::add_f32(x.ptr<float>(), y.ptr<float>(), x.numel(), s());
    else
      fail("add: dtype {} not supported", dtype_name(x.dtype()));
  });
}

void CudaOps::gather_rows(const Tensor& x, const Tensor& rows, Tensor out) {
  const int64_t R = rows.numel();
  NC_CHECK(x.ndim() == 2, "gather_rows: input {} is not 2-D", shape_str(x.shape()));
  out.expect_shape({R, x.dim(1)}, "gather_rows");
  NC_CHECK(x.dtype() == out.dtype(), "gather_rows: dtypes differ");
  expect_cuda(x, "gather_rows");
  expect_cuda(out, "gather_rows");
  x.expect_contiguous("gather_rows");
  out.expect_contiguous("gather_rows");
  expect_i32(rows, "gather_rows rows");
  const int64_t row_bytes = x.dim(1) * int64_t(dtype_size(x.dtype()));
  k_call([&] {
    cuda::gather_rows(x.data(), rows.ptr<int32_t>(), out.data(), R, x.dim(0), row_bytes, s());
  });
}

void CudaOps::scatter_ids(const Tensor& src, const Tensor& pairs, Tensor dst) {
  for (const Tensor* t : {&src, &pairs, static_cast<const Tensor*>(&dst)}) {
    expect_cuda(*t, "scatter_ids");
    expect_i32(*t, "scatter_ids");
  }
  NC_CHECK(pairs.numel() % 2 == 0, "scatter_ids: {} pair entries", pairs.numel());
  k_call([&] {
    cuda::scatter_ids(src.ptr<int32_t>(), src.numel(), pairs.ptr<int32_t>(), pairs.numel() / 2,
                      dst.ptr<int32_t>(), dst.numel(), s());
  });
}

void CudaOps::fill_uniform(Tensor t, uint64_t seed, float low, float high) {
  expect_cuda(t, "fill_uniform");
  t.expect_contiguous("fill_uniform");
  NC_CHECK(t.dtype() == DType::BF16 || t.dtype() == DType::F32,
           "fill_uniform: dtype {} not supported (bf16, f32)", dtype_name(t.dtype()));
  k_call([&] {
    cuda::fill_uniform(t.data(), t.dtype() == DType::BF16, t.numel(), seed, low, high, s());
  });
}

// cos/sin must be float32 for FlashInfer. A table uploaded as bf16 (upload() converts to the
// backend dtype) is widened on every call into a reused buffer (cheap next to attention; no
// cache keyed by address, which a freed and reallocated table could alias). It then carries
// bf16 rounding: prefer an f32 table (alloc F32 + copy_from_host).
const float* CudaOps::rope_table(const Tensor& cos_sin) {
  if (cos_sin.dtype() == DType::F32) return cos_sin.ptr<float>();
  NC_CHECK(cos_sin.dtype() == DType::BF16, "rope: cos/sin table dtype {} not supported",
           dtype_name(cos_sin.dtype()));
  if (rope_f32_.numel() < cos_sin.numel())
    rope_f32_ = device_alloc(ctx_, {cos_sin.numel()}, DType::F32);
  k_call([&] { cuda::bf16_to_f32(cos_sin.data(), rope_f32_.ptr<float>(), cos_sin.numel(), s()); });
  return rope_f32_.ptr<float>();
}

}  // namespace nc::cuda_host

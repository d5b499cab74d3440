// The CUDA backend's elementwise side: host<->device copies, embedding, norms, rope, the fused
// qkv prologue, activation, row copies and gathers, random fills (ops.cu, qkv_norm_rope.cu).
//
// Each method checks its tensors (device, dtype, shape; nc::Error naming the bad one) and then
// enqueues one kernel or copy on the context's stream, exactly as Backend's contract for the op
// says; only to_host_f32 waits for the device.
#pragma once
#include <memory>
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/fused_kernels.h"
#include "backend/op_checks.h"
#include "core/host_tensor.h"

namespace nc::cuda_host {

class CudaOps {
 public:
  explicit CudaOps(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}

  Tensor upload(const HostTensor& t);
  void copy_from_host(Tensor dst, const void* src);
  std::vector<float> to_host_f32(const Tensor& t);

  void embedding(const Tensor& table, const Tensor& ids, Tensor out);
  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out);
  void add_rmsnorm(Tensor x, Tensor residual, const Tensor& weight, float eps);
  void rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& cos_sin, int head_dim);
  // append (optional): also writes k and v into their page slots (fused_kernels.h).
  void qkv_split_norm_rope(const Tensor& qkv, const Tensor& q_norm, const Tensor& k_norm, float eps,
                           const Tensor& positions, const Tensor& cos_sin, int head_dim, Tensor q,
                           Tensor k, Tensor v, const cuda::KvAppendTarget* append = nullptr);
  void silu_and_mul(const Tensor& gate_up, Tensor out);
  void gelu_tanh_and_mul(const Tensor& gate_up, Tensor out);
  void scale(Tensor x, float s);
  void soft_cap(Tensor x, float cap);
  void apply_token_bitmask(Tensor logits, const Tensor& bitmask);
  void copy_rows(const Tensor& src, Tensor dst);
  void add(Tensor x, const Tensor& y);
  void gather_rows(const Tensor& x, const Tensor& rows, Tensor out);
  void scatter_ids(const Tensor& src, const Tensor& pairs, Tensor dst);
  void fill_uniform(Tensor t, uint64_t seed, float low, float high);

 private:
  // The qkv prologue's argument checks; returns the widths of q and k rows.
  QkvWidths check_qkv_split(const Tensor& qkv, const Tensor& q_norm, const Tensor& k_norm,
                            const Tensor& positions, const Tensor& cos_sin, int head_dim,
                            const Tensor& q, const Tensor& k, const Tensor& v) const;
  const float* rope_table(const Tensor& cos_sin);
  cudaStream_t s() const { return ctx_->stream; }

  std::shared_ptr<Context> ctx_;
  Tensor rope_f32_;  // rope_table's widened copy of a bf16 table
};

}  // namespace nc::cuda_host

// Backend: the ops the decoder needs, on one device. The model calls them in order; a backend
// may run them asynchronously (the CUDA backend does) until something is copied to the host.
//
// Conventions: activations are 2-D row-major [tokens, features] in the backend's dtype();
// weights come from upload() in Hugging Face layout (Linear: [out, in]); ids and positions are
// int32 tensors on the device.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kv/paged_kv.h"
#include "model/host_tensor.h"

namespace nc {

struct AttentionShape {
  int num_qo_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float sm_scale = 1.0f;
  KVCacheShape kv;
};

// What a backend builds once per step from the host-side AttentionStep (FlashInfer's "plan"),
// then reuses for every layer ("run").
class AttentionPlan {
 public:
  virtual ~AttentionPlan() = default;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;
  virtual DType dtype() const = 0;  // of weights and activations

  // Memory.
  virtual Tensor alloc(const Shape& shape, DType dtype) = 0;
  virtual Tensor upload(const HostTensor& t) = 0;                // converted to dtype()
  virtual void copy_from_host(Tensor dst, const void* src) = 0;  // dst.nbytes() bytes
  virtual std::vector<float> to_host_f32(const Tensor& t) = 0;   // any float dtype, synchronises
  virtual void synchronize() {}

  // out[t] = table[ids[t]]. ids: i32 [T]; table: [V, H]; out: [T, H].
  virtual void embedding(const Tensor& table, const Tensor& ids, Tensor out) = 0;
  // out = x / rms(x) * weight, per row. x, out: [N, H]; weight: [H].
  virtual void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) = 0;
  // residual += x; x = rmsnorm(residual) * weight. Both [N, H].
  virtual void add_rmsnorm(Tensor x, Tensor residual, const Tensor& weight, float eps) = 0;
  // out = x @ w^T (+ bias). x: [N, K]; w: [M, K]; bias: [M] or undefined; out: [N, M].
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor out) = 0;
  // In place, rotate-half (NeoX/HF) style. q: [T, Hq*D]; k: [T, Hk*D]; positions: i32 [T];
  // cos_sin: f32 [max_pos, D] with cos in the first D/2 columns and sin in the last D/2.
  virtual void rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& cos_sin,
                    int head_dim) = 0;
  // out = silu(gate_up[:, :I]) * gate_up[:, I:]. gate_up: [T, 2I]; out: [T, I].
  virtual void silu_and_mul(const Tensor& gate_up, Tensor out) = 0;
  // dst = src (same shape, same device).
  virtual void copy_rows(const Tensor& src, Tensor dst) = 0;
  // x += y, elementwise.
  virtual void add(Tensor x, const Tensor& y) = 0;
  // out[i] = x[rows[i]]. rows: i32 [R].
  virtual void gather_rows(const Tensor& x, const Tensor& rows, Tensor out) = 0;

  // Attention over paged KV. plan_attention takes host metadata only (no device sync);
  // attention() appends the step's k/v into kv_pages (the layer's page tensor) at the slots the
  // plan's last level names, then attends. q, out: [T, Hq*D]; k, v: [T, Hk*D].
  virtual std::unique_ptr<AttentionPlan> plan_attention(const AttentionStep& step,
                                                        const AttentionShape& shape) = 0;
  virtual void attention(const AttentionPlan& plan, const Tensor& q, const Tensor& k,
                         const Tensor& v, Tensor kv_pages, Tensor out) = 0;
};

std::unique_ptr<Backend> make_cpu_backend();
// Throws nc::Error when the binary was built without CUDA or no GPU is present.
std::unique_ptr<Backend> make_cuda_backend(int device_index = 0);

}  // namespace nc

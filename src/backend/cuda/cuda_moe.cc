// The CUDA backend's MoE ops (backend/cuda/cuda_moe.h).
#include "backend/cuda/cuda_moe.h"

#include "backend/cuda/kernels.h"

namespace nc::cuda_host {
namespace {

void expect_f32(const Tensor& t, const char* what) {
  t.expect_device(Device::CUDA, what);
  t.expect_dtype(DType::F32, what);
  t.expect_contiguous(what);
}

}  // namespace

void CudaMoe::route(const Tensor& logits, const Tensor& bias, const MoeRouting& r, Tensor ids,
                    Tensor weights) {
  r.validate();
  NC_CHECK(r.n_group <= 64, "moe_route: n_group {} above 64 is not supported on CUDA", r.n_group);
  const int64_t T = logits.dim(0), k = r.top_k;
  logits.expect_shape({T, r.num_experts}, "moe_route logits");
  ids.expect_shape({T, k}, "moe_route ids");
  weights.expect_shape({T, k}, "moe_route weights");
  expect_f32(logits, "moe_route logits");
  expect_i32(ids, "moe_route ids");
  expect_f32(weights, "moe_route weights");
  const float* b = nullptr;
  if (bias.defined()) {
    NC_CHECK(r.has_bias(), "moe_route: a bias is given for softmax routing, which has none");
    bias.expect_shape({r.num_experts}, "moe_route bias");
    expect_f32(bias, "moe_route bias");
    b = bias.ptr<float>();
  }
  cuda::MoeRouteParams p;
  p.num_experts = r.num_experts;
  p.top_k = r.top_k;
  p.n_group = r.n_group;
  p.topk_group = r.topk_group;
  p.sigmoid = r.scoring == MoeScoring::Sigmoid;
  p.renormalize = r.renormalize;
  p.scaling = r.scaling;
  k_call([&] {
    cuda::moe_route_f32(logits.ptr<float>(), b, int(T), p, ids.ptr<int32_t>(), weights.ptr<float>(),
                        ctx_->stream);
  });
}

void CudaMoe::experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                      const Tensor& gate_up, const Tensor& down, Tensor out) {
  NC_CHECK(x.ndim() == 2 && ids.ndim() == 2 && gate_up.ndim() == 3 && down.ndim() == 3,
           "moe_experts: x {}, ids {}, gate_up {}, down {}: expected [T, H], [T, k], [E, 2I, H], "
           "[E, H, I]",
           shape_str(x.shape()), shape_str(ids.shape()), shape_str(gate_up.shape()),
           shape_str(down.shape()));
  const int64_t T = x.dim(0), H = x.dim(1), k = ids.dim(1), E = gate_up.dim(0);
  const int64_t I = gate_up.dim(1) / 2;
  gate_up.expect_shape({E, 2 * I, H}, "moe_experts gate_up");
  down.expect_shape({E, H, I}, "moe_experts down");
  ids.expect_shape({T, k}, "moe_experts ids");
  weights.expect_shape({T, k}, "moe_experts weights");
  out.expect_shape({T, H}, "moe_experts output");
  for (const Tensor* t : {&x, &gate_up, &down, static_cast<const Tensor*>(&out)}) {
    expect_bf16(*t, "moe_experts");
    t->expect_contiguous("moe_experts");
  }
  expect_i32(ids, "moe_experts ids");
  expect_f32(weights, "moe_experts weights");
  const size_t need = cuda::moe_scratch_bytes(int(T), int(k), int(E), int(H), int(I));
  if (!scratch_.defined() || scratch_.nbytes() < need)
    scratch_ = device_alloc(ctx_, {int64_t((need + 3) / 4)}, DType::I32);
  k_call([&] {
    cuda::moe_experts_bf16(x.data(), ids.ptr<int32_t>(), weights.ptr<float>(), gate_up.data(),
                           down.data(), out.data(), int(T), int(k), int(E), int(H), int(I),
                           scratch_.data(), ctx_->stream);
  });
}

}  // namespace nc::cuda_host

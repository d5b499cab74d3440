// The CUDA backend's MoE ops (backend/cuda/cuda_moe.h).
#include "backend/cuda/cuda_moe.h"

#include <cstdint>
#include <cstdlib>
#include <string>

#include "backend/cuda/kernels.h"
#include "backend/cuda/moe_grouped.h"

namespace nc::cuda_host {
namespace {

void expect_f32(const Tensor& t, const char* what) {
  t.expect_device(Device::CUDA, what);
  t.expect_dtype(DType::F32, what);
  t.expect_contiguous(what);
}

}  // namespace

cuda::MoeGemmPath CudaMoe::gemm_path(int hidden, int inter, bool weights_aligned) {
  const char* env = std::getenv("NC_MOE_GEMM");
  const std::string mode = env && *env ? env : "auto";
  NC_CHECK(mode == "auto" || mode == "simt" || mode == "grouped",
           "NC_MOE_GEMM='{}': expected auto, simt or grouped", mode);
  const bool fits = cuda::moe_grouped_supported(hidden, inter) && weights_aligned;
  if (mode == "simt") return cuda::MoeGemmPath::Simt;
  NC_CHECK(mode == "auto" || fits,
           "NC_MOE_GEMM=grouped: hidden {} and moe_intermediate {} must be multiples of 8 and the "
           "expert weights 16-byte aligned (aligned: {}) for the grouped GEMM",
           hidden, inter, weights_aligned);
  // auto: the grouped GEMM wherever it fits. On an H100 (2026-12-06, `nc_gpu_bench moe`,
  // Qwen3-30B-A3B's experts) it took 5.1-10.4x less time than the SIMT kernel at 1..2048 tokens,
  // and tests/gpu/test_cuda_moe_grouped.cc passed there.
  return fits ? cuda::MoeGemmPath::Grouped : cuda::MoeGemmPath::Simt;
}

void CudaMoe::route(const Tensor& logits, const Tensor& bias, const MoeRouting& r, Tensor ids,
                    Tensor weights) {
  r.validate();
  NC_CHECK(r.n_group <= 64, "moe_route: n_group {} above 64 is not supported on CUDA", r.n_group);
  NC_CHECK(r.num_experts <= cuda::kMaxRouteExperts,
           "moe_route: {} experts; CUDA routing takes at most {}", r.num_experts,
           cuda::kMaxRouteExperts);
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
  // CUTLASS reads the weights in 16-byte vectors (a view into a larger buffer may not be).
  const bool aligned = reinterpret_cast<uintptr_t>(gate_up.data()) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(down.data()) % 16 == 0;
  const cuda::MoeGemmPath path = gemm_path(int(H), int(I), aligned);
  ensure_scratch(cuda::moe_scratch_bytes(int(T), int(k), int(E), int(H), int(I)), "moe_experts");
  k_call([&] {
    cuda::moe_experts_bf16(x.data(), ids.ptr<int32_t>(), weights.ptr<float>(), gate_up.data(),
                           down.data(), out.data(), int(T), int(k), int(E), int(H), int(I),
                           scratch_.data(), path, ctx_->stream);
  });
}

int64_t CudaMoe::reserve(int max_tokens, int top_k, int num_experts, int hidden, int inter) {
  NC_CHECK(max_tokens >= 1 && top_k >= 1 && num_experts >= 1 && hidden >= 1 && inter >= 1,
           "reserve_moe: sizes tokens {}, top_k {}, experts {}, hidden {}, inter {}", max_tokens,
           top_k, num_experts, hidden, inter);
  const size_t need = cuda::moe_scratch_bytes(max_tokens, top_k, num_experts, hidden, inter);
  // Freed in stream order: the graphs that read them are gone (cuda_moe.h).
  retired_.clear();
  if (scratch_.defined() && scratch_.nbytes() < need) scratch_ = Tensor();
  ensure_scratch(need, "reserve_moe");
  return int64_t(scratch_.nbytes());
}

void CudaMoe::ensure_scratch(size_t bytes, const char* why) {
  if (scratch_.defined() && scratch_.nbytes() >= bytes) return;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  cuda_check(cudaStreamIsCapturing(ctx_->stream, &capture), "cudaStreamIsCapturing");
  NC_CHECK(capture == cudaStreamCaptureStatusNone,
           "{}: the MoE scratch of {} bytes is too small for {} bytes inside a CUDA graph capture "
           "(reserve_moe must cover the largest step first)",
           why, scratch_.defined() ? scratch_.nbytes() : 0, bytes);
  if (scratch_.defined()) retired_.push_back(std::move(scratch_));
  scratch_ = device_alloc(ctx_, {int64_t((bytes + 3) / 4)}, DType::I32);
}

}  // namespace nc::cuda_host

// The CUDA backend's fused ops (cuda_fused.h).
#include "backend/cuda/cuda_fused.h"

#include <cstdlib>
#include <cstring>

#include "backend/cuda/cuda_attention_plan.h"
#include "backend/cuda/gemv_kernels.h"

namespace nc::cuda_host {
namespace {

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

bool on_device_bf16(const Tensor& t) {
  return t.defined() && t.device() == Device::CUDA && t.dtype() == DType::BF16 && t.is_contiguous();
}

}  // namespace

FuseOptions FuseOptions::from_env(bool enabled) {
  FuseOptions o;
  const char* fuse = std::getenv("NC_FUSE");
  o.enabled =
      enabled && (fuse == nullptr || *fuse == '\0' ? kFuseByDefault : std::strcmp(fuse, "0") != 0);
  if (const char* v = std::getenv("NC_FUSE_SILU_MAX_ROWS"); v != nullptr && *v != '\0') {
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    NC_CHECK(end != v && *end == '\0' && n >= 0 && n <= cuda::kGemvMaxRows,
             "NC_FUSE_SILU_MAX_ROWS={} is not a row count in 0..{}", v, cuda::kGemvMaxRows);
    o.silu_max_rows = int(n);
  }
  return o;
}

bool fused_silu_mul_linear(const Context& ctx, const FuseOptions& o, const Tensor& gate_up,
                           const Tensor& w, const Tensor& bias, Tensor out) {
  if (!o.enabled || !on_device_bf16(gate_up) || !on_device_bf16(w)) return false;
  if (gate_up.ndim() != 2 || w.ndim() != 2 || out.ndim() != 2) return false;
  const int64_t T = gate_up.dim(0), I = gate_up.dim(1) / 2, M = w.dim(0);
  if (T < 1 || T > o.silu_max_rows || gate_up.dim(1) % 2 != 0 || w.dim(1) != I) return false;
  if (out.device() != Device::CUDA || !out.is_contiguous() || out.dim(0) != T || out.dim(1) != M)
    return false;
  const bool f32_out = out.dtype() == DType::F32;
  if (!f32_out && out.dtype() != DType::BF16) return false;
  if (bias.defined() && (bias.device() != Device::CUDA || bias.dtype() != out.dtype() ||
                         bias.numel() != M || !bias.is_contiguous()))
    return false;
  if (!aligned16(gate_up.data()) || !aligned16(w.data()) ||
      !cuda::gemv_supported(T, I, gate_up.data(), w.data()) || M >= (int64_t(1) << 31))
    return false;
  k_call([&] {
    cuda::gemv_silu_bf16(gate_up.data(), w.data(), bias.defined() ? bias.data() : nullptr,
                         out.data(), f32_out, T, M, I, ctx.stream);
  });
  return true;
}

bool fused_append_target(const FuseOptions& o, const AttentionPlan& plan_base, const Tensor& pages,
                         int64_t tokens, int64_t k_width, int head_dim, cuda::KvAppendTarget* out) {
  const auto* plan = dynamic_cast<const CudaAttentionPlan*>(&plan_base);
  if (!o.enabled || plan == nullptr || tokens < 1 || plan->num_tokens != tokens) return false;
  const AttentionShape& sh = plan->shape;
  if (sh.latent_dim > 0 || sh.kv.latent || sh.kv.fp8 || sh.head_dim != head_dim ||
      int64_t(sh.num_kv_heads) * head_dim != k_width || plan->levels.empty())
    return false;
  if (!on_device_bf16(pages) || pages.numel() != int64_t(sh.kv.num_pages) * sh.kv.elems_per_page())
    return false;
  const LevelPlan& own = plan->levels.back();
  out->pages = pages.data();
  out->page_size = sh.kv.page_size;
  out->hnd = sh.kv.layout == KVLayout::HND;
  out->kv_indptr = plan->staging.dev_ptr(own.arrays.kv_indptr);
  out->kv_indices = plan->staging.dev_ptr(own.arrays.kv_indices);
  out->batch_indices = plan->staging.dev_ptr(plan->batch_indices);
  out->positions = plan->staging.dev_ptr(plan->positions);
  return true;
}

}  // namespace nc::cuda_host

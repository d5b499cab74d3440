// The CUDA backend's whole-layer decode kernel, host side (cuda_decode_layer.h).
#include "backend/cuda/cuda_decode_layer.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backend/cuda/cuda_attention_plan.h"
#include "backend/cuda/decode_layer_kernels.h"

namespace nc::cuda_host {
namespace {

size_t trace_bytes() {
  return (1 + size_t(cuda::kDecodeLayerTraceLaunches) * cuda::kDecodeLayerStamps) *
         sizeof(unsigned long long);
}

// Auto resolved: On or Off by the environment's NC_DECODE_LAYER, else Auto (by the layer's size).
DecodeLayerMode resolve(DecodeLayerMode mode) {
  if (mode != DecodeLayerMode::Auto) return mode;
  const char* v = std::getenv("NC_DECODE_LAYER");
  if (v == nullptr || *v == '\0') return DecodeLayerMode::Auto;
  return std::strcmp(v, "0") != 0 ? DecodeLayerMode::On : DecodeLayerMode::Off;
}

// A bf16 tensor on the device, contiguous, 16-byte aligned, of n elements.
bool bf16_row(const Tensor& t, int64_t n) {
  return t.defined() && t.device() == Device::CUDA && t.dtype() == DType::BF16 &&
         t.is_contiguous() && t.numel() == n && reinterpret_cast<uintptr_t>(t.data()) % 16 == 0;
}

bool bf16_matrix(const Tensor& t, int64_t rows, int64_t cols) {
  return t.ndim() == 2 && t.dim(0) == rows && t.dim(1) == cols && bf16_row(t, rows * cols);
}

// Undefined, or a bf16 row of n.
bool optional_row(const Tensor& t, int64_t n) {
  return !t.defined() || bf16_row(t, n);
}

const void* data_or_null(const Tensor& t) {
  return t.defined() ? t.data() : nullptr;
}

// Whether the plan is one the kernel can run over these pages (cuda_decode_layer.h); *out: the
// plan as the CUDA backend's.
bool plan_fits(const AttentionPlan& plan_base, const Tensor& pages, const CudaAttentionPlan** out) {
  const auto* plan = dynamic_cast<const CudaAttentionPlan*>(&plan_base);
  if (plan == nullptr || plan->split_head || plan->levels.size() != 1 || plan->num_tokens != 1 ||
      plan->levels[0].batch_size != 1)
    return false;
  const AttentionShape& sh = plan->shape;
  if (sh.latent_dim > 0 || sh.kv.latent || sh.kv.fp8 || sh.logits_soft_cap > 0 ||
      sh.window_left >= 0 || sh.num_kv_heads <= 0 || sh.num_qo_heads % sh.num_kv_heads != 0)
    return false;
  if (!cuda::decode_layer_supported(sh.head_dim, sh.num_qo_heads / sh.num_kv_heads) ||
      sh.num_kv_heads > cuda::decode_layer_blocks())
    return false;
  if (!bf16_row(pages, int64_t(sh.kv.num_pages) * sh.kv.elems_per_page())) return false;
  *out = plan;
  return true;
}

// The layer's sizes: head_dim, q and kv heads, hidden, intermediate, and qkv's rows.
struct LayerSizes {
  int64_t D = 0, hq = 0, hk = 0, H = 0, I = 0, qkv_rows = 0;
};

LayerSizes sizes_of(const AttentionShape& sh, const DecodeLayerWeights& w,
                    const DecodeLayerIo& io) {
  LayerSizes n;
  n.D = sh.head_dim, n.hq = sh.num_qo_heads, n.hk = sh.num_kv_heads;
  n.H = io.residual.numel();
  n.I = w.down.ndim() == 2 ? w.down.dim(1) : 0;
  n.qkv_rows = (n.hq + 2 * n.hk) * n.D;
  return n;
}

// Every row and weight of the layer as the kernel takes it (decode_layer_kernels.h).
bool layer_fits(const LayerSizes& n, const DecodeLayerWeights& w, const DecodeLayerIo& io) {
  const int64_t H = n.H, I = n.I, q_width = n.hq * n.D;
  if (H % 8 != 0 || I % 8 != 0 || I == 0 || H > cuda::kDecodeLayerMaxHidden ||
      H > int64_t(cuda::kDecodeLayerMaxRowsPerBlock) * cuda::decode_layer_blocks())
    return false;
  if (!bf16_row(io.hidden, H) || !bf16_row(io.residual, H) || !bf16_row(io.qkv, n.qkv_rows) ||
      !bf16_row(io.attn, q_width) || !bf16_row(io.act, I))
    return false;
  if (!bf16_row(w.input_norm, H) || !bf16_row(w.post_norm, H) ||
      !bf16_matrix(w.qkv, n.qkv_rows, H) || !bf16_matrix(w.o_proj, H, q_width) ||
      !bf16_matrix(w.gate_up, 2 * I, H) || !bf16_matrix(w.down, H, I))
    return false;
  if (!optional_row(w.qkv_bias, n.qkv_rows) || !optional_row(w.o_bias, H) ||
      !optional_row(w.q_norm, n.D) || !optional_row(w.k_norm, n.D))
    return false;
  if (!io.positions.defined() || io.positions.device() != Device::CUDA ||
      io.positions.dtype() != DType::I32 || io.positions.numel() != 1)
    return false;
  if (!io.cos_sin.defined() || io.cos_sin.device() != Device::CUDA ||
      io.cos_sin.dtype() != DType::F32 || io.cos_sin.ndim() != 2 || io.cos_sin.dim(1) != n.D ||
      reinterpret_cast<uintptr_t>(io.cos_sin.data()) % 16 != 0)
    return false;
  return cuda::decode_layer_smem_bytes(int(H), int(q_width), int(I), int(n.hq / n.hk), int(n.D)) <=
         cuda::decode_layer_max_smem();
}

void set_rows(cuda::DecodeLayerParams& p, const DecodeLayerIo& io, const LayerSizes& n) {
  p.hidden = io.hidden.data();
  p.residual = io.residual.data();
  p.add_hidden = io.add_hidden;
  p.qkv = io.qkv.data();
  p.attn = io.attn.data();
  p.act = io.act.data();
  p.eps = io.eps;
  p.rope_position = static_cast<const int32_t*>(io.positions.data());
  p.cos_sin = static_cast<const float*>(io.cos_sin.data());
  p.hidden_size = int(n.H);
  p.num_qo_heads = int(n.hq);
  p.num_kv_heads = int(n.hk);
  p.head_dim = int(n.D);
  p.intermediate = int(n.I);
}

void set_weights(cuda::DecodeLayerParams& p, const DecodeLayerWeights& w) {
  p.input_norm = w.input_norm.data();
  p.qkv_w = w.qkv.data();
  p.qkv_bias = data_or_null(w.qkv_bias);
  p.q_norm = data_or_null(w.q_norm);
  p.k_norm = data_or_null(w.k_norm);
  p.o_w = w.o_proj.data();
  p.o_bias = data_or_null(w.o_bias);
  p.post_norm = w.post_norm.data();
  p.gate_up_w = w.gate_up.data();
  p.down_w = w.down.data();
}

// The pages and the plan's own level: the one entry's CSR arrays and its append slot.
void set_kv(cuda::DecodeLayerParams& p, const CudaAttentionPlan& plan, const Tensor& pages) {
  const AttentionShape& sh = plan.shape;
  const LevelPlan& own = plan.levels.back();
  p.sm_scale = sh.sm_scale;
  p.kv.pages = pages.data();
  p.kv.page_size = sh.kv.page_size;
  p.kv.hnd = sh.kv.layout == KVLayout::HND;
  p.kv.kv_indptr = plan.staging.dev_ptr(own.arrays.kv_indptr);
  p.kv.kv_indices = plan.staging.dev_ptr(own.arrays.kv_indices);
  p.kv.batch_indices = plan.staging.dev_ptr(plan.batch_indices);
  p.kv.positions = plan.staging.dev_ptr(plan.positions);
  p.last_page_len = plan.staging.dev_ptr(own.arrays.last_page_len);
}

int64_t layer_weight_bytes(const LayerSizes& n) {
  return 2 * (n.qkv_rows * n.H + n.H * n.hq * n.D + 3 * n.I * n.H);
}

}  // namespace

DecodeLayerRunner::DecodeLayerRunner(std::shared_ptr<Context> ctx, DecodeLayerMode mode)
    : ctx_(std::move(ctx)) {
  mode = resolve(mode);
  if (mode == DecodeLayerMode::Off) return;
  by_size_ = mode == DecodeLayerMode::Auto;
  const size_t bytes = cuda::decode_layer_scratch_bytes(cuda::decode_layer_blocks());
  cuda_check(cudaMalloc(&scratch_, bytes), "cudaMalloc (decode layer scratch)");
  cuda_check(cudaMemset(scratch_, 0, bytes), "cudaMemset (decode layer scratch)");
  if (const char* f = std::getenv("NC_DECODE_LAYER_FLAGS"); f != nullptr) flags_ = std::atoi(f);
  const char* trace = std::getenv("NC_DECODE_LAYER_TRACE");
  if (trace != nullptr && std::strcmp(trace, "1") == 0) {
    cuda_check(cudaMalloc(reinterpret_cast<void**>(&trace_), trace_bytes()),
               "cudaMalloc (decode layer trace)");
    cuda_check(cudaMemset(trace_, 0, trace_bytes()), "cudaMemset (decode layer trace)");
  }
}

DecodeLayerRunner::~DecodeLayerRunner() {
  if (scratch_) cudaFree(scratch_);
  if (trace_) cudaFree(trace_);
}

std::vector<uint64_t> DecodeLayerRunner::take_trace() {
  if (trace_ == nullptr) return {};
  ctx_->synchronize();
  std::vector<uint64_t> out(trace_bytes() / sizeof(uint64_t));
  cuda_check(cudaMemcpy(out.data(), trace_, trace_bytes(), cudaMemcpyDeviceToHost),
             "decode layer trace");
  cuda_check(cudaMemset(trace_, 0, sizeof(uint64_t)), "decode layer trace");
  const uint64_t launches = std::min<uint64_t>(out[0], cuda::kDecodeLayerTraceLaunches);
  out.resize(1 + launches * cuda::kDecodeLayerStamps);
  return out;
}

bool DecodeLayerRunner::run(const AttentionPlan& plan_base, const Tensor& pages,
                            const DecodeLayerWeights& w, const DecodeLayerIo& io) {
  const CudaAttentionPlan* plan = nullptr;
  if (!enabled() || !plan_fits(plan_base, pages, &plan)) return false;
  const LayerSizes n = sizes_of(plan->shape, w, io);
  if (!layer_fits(n, w, io)) return false;
  if (by_size_ && layer_weight_bytes(n) > kDecodeLayerAutoMaxBytes) return false;
  cuda::DecodeLayerParams p;
  set_rows(p, io, n);
  set_weights(p, w);
  set_kv(p, *plan, pages);
  p.scratch = scratch_;
  p.trace = trace_;
  p.flags = flags_;
  k_call([&] { cuda::decode_layer_bf16(p, ctx_->stream); });
  return true;
}

}  // namespace nc::cuda_host

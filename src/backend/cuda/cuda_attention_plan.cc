// The level planner of the CUDA backend's attention (cuda_attention_plan.h): FlashInfer plan and
// run calls per level, the append of the step's k/v, and the cascade merges.
#include "backend/cuda/cuda_attention_plan.h"

#include "backend/cuda/pdl.h"

#include <cmath>
#include <cstring>

namespace nc::cuda_host {
namespace {

int64_t row_stride(const Tensor& t) {
  return t.ndim() >= 2 ? t.strides()[0] : t.numel();
}

// Levels on the side stream run concurrently with the main stream's: their own scratch. A graph
// plan's levels bring their own (fixed) scratch.
cuda::PlanWorkspace level_workspace(const CudaAttentionPlan& plan, const LevelPlan& lp) {
  cuda::PlanWorkspace ws;
  const FloatWorkspace& shared = lp.side ? plan.ctx->side_ws : plan.ctx->attn_ws;
  ws.float_ws = lp.fixed_ws ? lp.fixed_ws : shared.ptr;
  ws.float_bytes = lp.fixed_ws ? lp.fixed_ws_bytes : shared.bytes;
  ws.int_ws = plan.staging.dev_ptr(lp.arrays.int_ws);
  ws.int_pinned = plan.staging.host_ptr(lp.arrays.int_ws);
  ws.int_bytes = lp.arrays.int_ws.count;
  return ws;
}

cuda::PagedKV paged(const CudaAttentionPlan& plan, const LevelPlan& lp, const Tensor& pages) {
  cuda::PagedKV kv;
  kv.pages = pages.data();
  kv.fp8 = plan.shape.kv.fp8;
  kv.num_kv_heads = plan.shape.num_kv_heads;
  kv.page_size = plan.shape.kv.page_size;
  kv.head_dim = plan.shape.head_dim;
  kv.hnd = plan.shape.kv.layout == KVLayout::HND;
  kv.batch_size = lp.batch_size;
  kv.indptr = plan.staging.dev_ptr(lp.arrays.kv_indptr);
  kv.indices = plan.staging.dev_ptr(lp.arrays.kv_indices);
  kv.last_page_len = plan.staging.dev_ptr(lp.arrays.last_page_len);
  return kv;
}

void run_level(const CudaAttentionPlan& plan, const LevelPlan& lp, const Tensor& pages,
               const Tensor& q, void* out, float* lse, cudaStream_t stream) {
  cuda::AttnIO io;
  io.q = q.data();
  io.o = out;
  io.lse = lse;
  io.num_qo_heads = plan.shape.num_qo_heads;
  // FP8 pages hold values / scale: K's scale folds into the softmax scale, V's into the output
  // (every kernel applies it before its bf16 rounding, so a cascade's merge sees true values).
  const KVCacheShape& kvs = plan.shape.kv;
  io.sm_scale = plan.shape.sm_scale * (kvs.fp8 ? kvs.k_scale : 1.0f);
  io.v_scale = kvs.fp8 ? kvs.v_scale : 1.0f;
  io.logits_soft_cap = plan.shape.logits_soft_cap;
  io.window_left = &lp == &plan.levels.back() ? plan.shape.window_left : -1;
  // Shared levels launch without PDL: a graph plan pads them to the batch, and a level without a
  // row masks every block of FlashInfer's grid before its griddepcontrol.wait, so the merge after
  // it would wait on nothing (review of 2026-12-07). The own level always has rows.
  io.pdl = cuda::pdl_enabled() && &lp == &plan.levels.back();
  const cuda::PlanWorkspace ws = level_workspace(plan, lp);
  const cuda::PagedKV kv = paged(plan, lp, pages);
  k_call([&] {
    switch (lp.kernel) {
      case LevelKernel::Decode:
        lp.table->decode_run(lp.info, ws, kv, io, stream);
        break;
      case LevelKernel::SM90Prefill:
        cuda::sm90_prefill_run(lp.info, ws, kv, io, stream);
        break;
      case LevelKernel::Prefill:
        lp.table->prefill_run(lp.info, ws, kv, plan.staging.dev_ptr(lp.arrays.qo_indptr), io,
                              stream);
        break;
      case LevelKernel::Generic:
        cuda::generic_attention_run(lp.info, kv, plan.staging.dev_ptr(lp.arrays.qo_indptr),
                                    lp.causal, io, stream);
        break;
    }
  });
}

void merge(const CudaAttentionPlan& plan, void* v, float* s, const void* v_other,
           const float* s_other, cudaStream_t stream) {
  k_call([&] {
    cuda::merge_state_inplace(v, s, v_other, s_other, plan.num_tokens, plan.shape.num_qo_heads,
                              plan.shape.head_dim, stream);
  });
}

// The shared levels of an overlapped plan, on the side stream after everything queued so far on
// the main one (q, the plan's metadata copy): the first into (level_out, lse_level), each
// further one into the second state and merged into the first. Records ctx.join at the end.
void run_shared_levels_on_side(const CudaAttentionPlan& plan, const Tensor& pages,
                               const Tensor& q) {
  const Context& ctx = *plan.ctx;
  const CascadeState& c = plan.cascade;
  cuda_check(cudaEventRecord(ctx.fork, ctx.stream), "cudaEventRecord");
  cuda_check(cudaStreamWaitEvent(ctx.side, ctx.fork), "cudaStreamWaitEvent");
  bool first = true;
  for (size_t l = 0; l + 1 < plan.levels.size(); ++l) {
    const LevelPlan& lp = plan.levels[l];
    if (lp.batch_size == 0) continue;
    run_level(plan, lp, pages, q, first ? c.level_out : c.level_out2,
              first ? c.lse_level : c.lse_level2, ctx.side);
    if (!first) merge(plan, c.level_out, c.lse_level, c.level_out2, c.lse_level2, ctx.side);
    first = false;
  }
  cuda_check(cudaEventRecord(ctx.join, ctx.side), "cudaEventRecord");
}

// The step's k/v rows into the own level's slots (quantised on the way into FP8 pages, with the
// CPU's inverse scales: cpu_append_kv_fp8).
void append_kv(const CudaAttentionPlan& plan, const Tensor& k, const Tensor& v,
               const Tensor& pages) {
  const KVCacheShape& kvs = plan.shape.kv;
  k_call([&] {
    if (kvs.fp8) {
      cuda::append_paged_kv_fp8(paged(plan, plan.levels.back(), pages), k.data(), v.data(),
                                plan.staging.dev_ptr(plan.batch_indices),
                                plan.staging.dev_ptr(plan.positions), plan.num_tokens,
                                row_stride(k), row_stride(v), 1.0f / kvs.k_scale,
                                1.0f / kvs.v_scale, plan.ctx->stream);
      return;
    }
    cuda::append_paged_kv(paged(plan, plan.levels.back(), pages), k.data(), v.data(),
                          plan.staging.dev_ptr(plan.batch_indices),
                          plan.staging.dev_ptr(plan.positions), plan.num_tokens, row_stride(k),
                          row_stride(v), plan.ctx->stream);
  });
}

}  // namespace

void StagingView::put(StagedArray<int32_t> a, const std::vector<int32_t>& v) const {
  NC_CHECK(v.size() <= a.count, "attention plan: {} values for a staged array of {}", v.size(),
           a.count);
  if (!v.empty()) std::memcpy(host_ptr(a), v.data(), v.size() * 4);
}

StreamBuffers::~StreamBuffers() {
  for (void* p : buffers_) cudaFreeAsync(p, ctx_->stream);
}

void* StreamBuffers::get(size_t bytes) {
  void* p = nullptr;
  cuda_check(cudaMallocAsync(&p, std::max<size_t>(bytes, 16), ctx_->stream), "attention scratch");
  buffers_.push_back(p);
  return p;
}

void validate_attention_shape(const AttentionShape& sh) {
  NC_CHECK(sh.num_qo_heads > 0 && sh.num_kv_heads > 0 && sh.num_qo_heads % sh.num_kv_heads == 0,
           "attention: {} query heads are not a multiple of {} kv heads", sh.num_qo_heads,
           sh.num_kv_heads);
  NC_CHECK(cuda::head_dim_supported(sh.head_dim),
           "attention: head_dim {} not supported by the CUDA backend (64, 96, 128, 256)",
           sh.head_dim);
  NC_CHECK(std::isfinite(sh.sm_scale) && sh.sm_scale > 0, "attention: sm_scale {} is not > 0",
           sh.sm_scale);
  NC_CHECK(std::isfinite(sh.logits_soft_cap) && sh.logits_soft_cap >= 0,
           "attention: logits_soft_cap {} is not >= 0 (0: off)", sh.logits_soft_cap);
  NC_CHECK(sh.window_left >= -1, "attention: window_left {} is not >= -1 (-1: off)",
           sh.window_left);
  NC_CHECK(sh.kv.head_dim == sh.head_dim && sh.kv.num_kv_heads == sh.num_kv_heads,
           "attention: kv cache shape (heads {}, dim {}) does not match attention ({}, {})",
           sh.kv.num_kv_heads, sh.kv.head_dim, sh.num_kv_heads, sh.head_dim);
  NC_CHECK(sh.kv.page_size >= 1 && sh.kv.page_size <= 256, "attention: page size {} outside 1..256",
           sh.kv.page_size);
  NC_CHECK(sh.num_qo_heads <= 64, "attention: more than 64 query heads ({}) not supported",
           sh.num_qo_heads);
  if (sh.kv.fp8) {
    NC_CHECK(!sh.kv.latent, "attention: an fp8 cache cannot be latent (MLA keeps bf16 pages)");
    NC_CHECK(std::isfinite(sh.kv.k_scale) && sh.kv.k_scale > 0 && std::isfinite(sh.kv.v_scale) &&
                 sh.kv.v_scale > 0,
             "attention: fp8 kv cache scales k {} v {} must be finite and > 0", sh.kv.k_scale,
             sh.kv.v_scale);
  }
}

void expect_kv_pages(const Tensor& pages, const KVCacheShape& kv, const char* what) {
  pages.expect_device(Device::CUDA, what);
  pages.expect_dtype(kv.fp8 ? DType::F8E4M3 : DType::BF16, what);
  pages.expect_contiguous(what);
}

LevelKernel graph_level_kernel(bool own, int head_dim, LevelKernel own_kernel) {
  if (cuda::generic_attention_serves(head_dim)) return LevelKernel::Generic;
  return own ? own_kernel : LevelKernel::Prefill;
}

cuda::AttnKernelKey level_key(LevelKernel kernel, bool causal, bool own, const AttentionShape& sh) {
  cuda::AttnKernelKey key;
  key.kind = kernel == LevelKernel::Decode ? cuda::AttnKind::Decode
             : causal                      ? cuda::AttnKind::PrefillCausal
                                           : cuda::AttnKind::PrefillNone;
  key.head_dim = sh.head_dim;
  key.window = own && sh.window_left >= 0;
  key.soft_cap = sh.logits_soft_cap > 0;
  key.kv_fp8 = sh.kv.fp8;
  return key;
}

void level_workspace_size(LevelKernel kernel, const cuda::PlanQuery& q, size_t* float_bytes,
                          size_t* int_bytes) {
  k_call([&] {
    switch (kernel) {
      case LevelKernel::Decode:
        NC_CHECK(q.kernels != nullptr, "attention: decode level without its kernels");
        q.kernels->decode_plan(q, nullptr, nullptr, float_bytes, int_bytes, nullptr);
        break;
      case LevelKernel::SM90Prefill:
        cuda::sm90_prefill_workspace_size(q, float_bytes, int_bytes);
        break;
      case LevelKernel::Prefill:
        cuda::prefill_workspace_size(q, float_bytes, int_bytes);
        break;
      case LevelKernel::Generic:  // no scheduling arrays, no split-KV scratch
        *float_bytes = *int_bytes = 0;
        break;
    }
  });
}

void stage_level(const StagingView& st, const LevelArrays& a, const PagedKVBatch& in) {
  st.put(a.qo_indptr, in.qo_indptr);
  st.put(a.kv_indptr, in.kv_indptr);
  st.put(a.kv_indices, in.kv_indices);
  st.put(a.last_page_len, in.kv_last_page_len);
}

void plan_levels(CudaAttentionPlan& plan, const std::vector<cuda::PlanQuery>& queries) {
  const cudaStream_t st = plan.ctx->stream;
  for (size_t l = 0; l < plan.levels.size(); ++l) {
    LevelPlan& lp = plan.levels[l];
    if (!plan.active(lp)) continue;
    const cuda::PlanWorkspace ws = level_workspace(plan, lp);
    k_call([&] {
      switch (lp.kernel) {
        case LevelKernel::Decode:
          lp.table->decode_plan(queries[l], &ws, &lp.info, nullptr, nullptr, st);
          break;
        case LevelKernel::SM90Prefill:
          lp.info = cuda::sm90_prefill_plan(queries[l], ws, st);
          break;
        case LevelKernel::Prefill:
          lp.info = cuda::prefill_plan(queries[l], ws, st);
          break;
        case LevelKernel::Generic:
          lp.info = cuda::generic_attention_plan(queries[l]);
          break;
      }
    });
  }
}

void run_levels(const CudaAttentionPlan& plan, const Tensor& q, const Tensor& k, const Tensor& v,
                const Tensor& pages, Tensor out, bool append) {
  const cudaStream_t st = plan.ctx->stream;
  const size_t nl = plan.levels.size();
  const CascadeState& c = plan.cascade;
  if (plan.overlap) {
    run_shared_levels_on_side(plan, pages, q);
    if (append) append_kv(plan, k, v, pages);
    run_level(plan, plan.levels.back(), pages, q, out.data(), c.lse_main, st);
    cuda_check(cudaStreamWaitEvent(st, plan.ctx->join), "cudaStreamWaitEvent");
    merge(plan, out.data(), c.lse_main, c.level_out, c.lse_level, st);
    return;
  }
  if (append) append_kv(plan, k, v, pages);
  // The last level writes `out` directly; shared levels are merged into it.
  run_level(plan, plan.levels.back(), pages, q, out.data(), nl > 1 ? c.lse_main : nullptr, st);
  for (size_t l = 0; l + 1 < nl; ++l) {
    const LevelPlan& lp = plan.levels[l];
    if (lp.batch_size == 0) continue;
    run_level(plan, lp, pages, q, c.level_out, c.lse_level, st);
    merge(plan, out.data(), c.lse_main, c.level_out, c.lse_level, st);
  }
}

}  // namespace nc::cuda_host

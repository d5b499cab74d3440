// The CUDA backend's MLA ops (contract: cuda_mla.h).
#include "backend/cuda/cuda_mla.h"

#include <algorithm>
#include <vector>

#include "backend/cuda/cuda_mla_expanded.h"
#include "backend/cuda/mla_plan.h"

namespace nc::cuda_host {

namespace {

// Level `b` as device copies (kept alive by plan.owned).
cuda::MlaLevel upload_level(const std::shared_ptr<Context>& ctx, const PagedKVBatch& b,
                            int page_size, CudaMlaPlan& plan) {
  std::vector<int32_t> row_entry(size_t(b.qo_indptr.back()));
  for (int e = 0; e < b.batch_size(); ++e)
    for (int r = b.qo_indptr[e]; r < b.qo_indptr[e + 1]; ++r) row_entry[size_t(r)] = e;
  auto up = [&](std::vector<int32_t> v) {
    plan.owned.push_back(mla_plan_array(ctx, std::move(v)));
    return plan.owned.back().ptr<int32_t>();
  };
  cuda::MlaLevel d;
  d.indptr = up(b.kv_indptr);
  d.indices = up(b.kv_indices);
  d.last_page_len = up(b.kv_last_page_len);
  d.qo_indptr = up(b.qo_indptr);
  d.row_entry = up(std::move(row_entry));
  d.page_size = page_size;
  d.causal = b.causal;
  return d;
}

// FlashInfer's plans of every level (mla_fi_host.h), padded to the step's rows, in one staging
// region copied in stream order; or nothing (the fallback) when a level's schedule would not fit.
void plan_fi(const std::shared_ptr<Context>& ctx, const AttentionStep& step,
             const AttentionShape& shape, CudaMlaPlan& plan) {
  const int H = shape.num_qo_heads;
  int entries = step.num_tokens;
  for (const PagedKVBatch& level : step.levels) entries = std::max(entries, level.batch_size());
  for (const PagedKVBatch& level : step.levels)
    if (!fi_level_fits(level, entries, H)) return;
  const size_t per_level = cuda::mla_fi_int_bytes();
  ctx->attn_ws.ensure(cuda::mla_fi_float_bytes());
  plan.fi_staging = PooledStaging(ctx, per_level * step.levels.size());
  const Staging& st = plan.fi_staging.get();
  for (size_t l = 0; l < step.levels.size(); ++l) {
    char* host = static_cast<char*>(st.host) + l * per_level;
    char* dev = static_cast<char*>(st.dev) + l * per_level;
    size_t staged = 0;
    FiLevel fl = plan_fi_level(step.levels[l], entries, H, shape.kv.page_size, host, dev,
                               ctx->attn_ws, &staged);
    fl.kv_indices = plan.levels[l].indices;
    plan.fi.push_back(std::move(fl));
    cuda_check(cudaMemcpyAsync(dev, host, staged, cudaMemcpyHostToDevice, ctx->stream),
               "mla plan (FlashInfer) copy");
  }
  cuda_check(cudaEventRecord(st.copied, ctx->stream), "cudaEventRecord");
  plan.kernel = mla_kernel(shape);
}

}  // namespace

void expect_mla_rows(const Tensor& t, int64_t rows, int64_t cols, const char* what) {
  expect_bf16(t, what);
  t.expect_contiguous(what);
  t.expect_shape({rows, cols}, what);
}

void expect_mla_pages(const Tensor& kv_pages, const AttentionShape& s) {
  expect_bf16(kv_pages, "mla pages");
  NC_CHECK(kv_pages.numel() == int64_t(s.kv.num_pages) * s.kv.elems_per_page(),
           "mla: page tensor of shape {} for {} pages of {} values", shape_str(kv_pages.shape()),
           s.kv.num_pages, s.kv.elems_per_page());
}

Tensor mla_plan_array(const std::shared_ptr<Context>& ctx, std::vector<int32_t> v) {
  if (v.empty()) v.push_back(0);
  Tensor t = device_alloc(ctx, {int64_t(v.size())}, DType::I32);
  // From pageable memory the call returns once v has been staged.
  cuda_check(cudaMemcpyAsync(t.data(), v.data(), t.nbytes(), cudaMemcpyHostToDevice, ctx->stream),
             "mla plan copy");
  return t;
}

void mla_head_linear(Context& ctx, const Tensor& x, const Tensor& w, Tensor out) {
  NC_CHECK(w.ndim() == 3 && x.ndim() == 2 && out.ndim() == 2 && x.dim(0) == out.dim(0),
           "head_linear: shapes x {}, w {}, out {}", shape_str(x.shape()), shape_str(w.shape()),
           shape_str(out.shape()));
  const int64_t T = x.dim(0), H = w.dim(0), M = w.dim(1), K = w.dim(2);
  NC_CHECK(x.dim(1) % H == 0 && out.dim(1) % H == 0 && K <= x.dim(1) / H && M <= out.dim(1) / H,
           "head_linear: w {} does not fit x {} and out {}", shape_str(w.shape()),
           shape_str(x.shape()), shape_str(out.shape()));
  for (const Tensor& t : {x, w, out}) {
    expect_bf16(t, "head_linear");
    t.expect_contiguous("head_linear");
  }
  if (T == 0) return;
  // One strided-batched GEMM over the heads (was one block per (row, head), whose threads each
  // walked a row of w: 218 us a call at 256 rows of DeepSeek-V2-Lite, 45% of its decode step on
  // the H100, 2026-12-06). Column-major view per head h: out_h^T [M, T] (ld H*So, head stride So)
  // = w_h ([M, K] row-major: K x M, transposed; head stride M*K) * x_h^T [K, T] (ld H*Sx, head
  // stride Sx).
  const int64_t sx = x.dim(1) / H, so = out.dim(1) / H;
  const float alpha = 1.0f, beta = 0.0f;
  cublas_check(
      cublasGemmStridedBatchedEx(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(M), int(T), int(K), &alpha,
                                 w.data(), CUDA_R_16BF, int(K), M * K, x.data(), CUDA_R_16BF,
                                 int(H * sx), sx, &beta, out.data(), CUDA_R_16BF, int(H * so), so,
                                 int(H), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "head_linear: cublasGemmStridedBatchedEx");
}

void mla_rope_norm(Context& ctx, const Tensor& q, const Tensor& kv_a, const Tensor& kv_norm,
                   float eps, const Tensor& positions, const Tensor& cos_sin, bool interleaved,
                   int nope_dim, Tensor q_mla, Tensor latent) {
  const int64_t T = positions.numel(), Dr = cos_sin.dim(1), D = kv_a.dim(1), Dl = D - Dr;
  const int64_t H = q.dim(1) / (nope_dim + Dr);
  NC_CHECK(Dl > 0 && Dr % 2 == 0 && q.dim(1) == H * (nope_dim + Dr) && kv_norm.numel() == Dl,
           "mla_rope_norm: q {}, kv_a {}, kv_norm {}, rope dim {}", shape_str(q.shape()),
           shape_str(kv_a.shape()), shape_str(kv_norm.shape()), Dr);
  expect_mla_rows(q, T, H * (nope_dim + Dr), "mla_rope_norm q");
  expect_mla_rows(kv_a, T, D, "mla_rope_norm kv_a");
  expect_mla_rows(q_mla, T, H * D, "mla_rope_norm q_mla");
  expect_mla_rows(latent, T, D, "mla_rope_norm latent");
  expect_bf16(kv_norm, "mla_rope_norm norm");
  expect_i32(positions, "mla_rope_norm positions");
  cos_sin.expect_dtype(DType::F32, "mla_rope_norm cos_sin");
  expect_cuda(cos_sin, "mla_rope_norm cos_sin");
  k_call([&] {
    cuda::mla_rope_norm_bf16(q.data(), kv_a.data(), kv_norm.data(), eps, positions.ptr<int32_t>(),
                             cos_sin.ptr<float>(), interleaved, T, int(H), nope_dim, int(Dr),
                             int(Dl), q_mla.data(), latent.data(), ctx.stream);
  });
}

std::unique_ptr<CudaMlaPlan> mla_plan_base(const AttentionStep& step, const AttentionShape& shape) {
  NC_CHECK(!step.levels.empty(), "mla plan: no levels");
  NC_CHECK(shape.latent_dim > 0 && shape.latent_dim < shape.head_dim && shape.kv.latent &&
               shape.num_kv_heads == 1 && shape.kv.head_dim == shape.head_dim,
           "mla plan: latent_dim {} and head_dim {} over pages (latent={}, {} heads of {})",
           shape.latent_dim, shape.head_dim, shape.kv.latent, shape.kv.num_kv_heads,
           shape.kv.head_dim);
  NC_CHECK(shape.window_left == -1 && shape.logits_soft_cap == 0.0f,
           "mla plan: no window or soft cap (window_left {}, logits_soft_cap {})",
           shape.window_left, shape.logits_soft_cap);
  for (const PagedKVBatch& level : step.levels)
    level.validate(step.num_tokens, shape.kv.page_size, shape.kv.num_pages);
  auto plan = std::make_unique<CudaMlaPlan>();
  plan->shape = shape;
  plan->num_tokens = step.num_tokens;
  return plan;
}

void add_mla_append_slots(const std::shared_ptr<Context>& ctx, const AttentionStep& step,
                          CudaMlaPlan& plan) {
  const PagedKVBatch& own = step.levels.back();
  const int ps = plan.shape.kv.page_size;
  std::vector<int32_t> page(size_t(step.num_tokens)), slot(size_t(step.num_tokens));
  for (int b = 0; b < own.batch_size(); ++b) {
    const int first = own.kv_len(b, ps) - own.q_len(b);
    for (int j = 0; j < own.q_len(b); ++j) {
      const size_t row = size_t(own.qo_indptr[b] + j);
      page[row] = own.kv_indices[size_t(own.kv_indptr[b] + (first + j) / ps)];
      slot[row] = (first + j) % ps;
    }
  }
  plan.owned.push_back(mla_plan_array(ctx, std::move(page)));
  plan.dst_page = plan.owned.back().ptr<int32_t>();
  plan.owned.push_back(mla_plan_array(ctx, std::move(slot)));
  plan.dst_slot = plan.owned.back().ptr<int32_t>();
}

void add_mla_levels(const std::shared_ptr<Context>& ctx, const AttentionStep& step,
                    CudaMlaPlan& plan) {
  for (const PagedKVBatch& level : step.levels)
    plan.levels.push_back(upload_level(ctx, level, plan.shape.kv.page_size, plan));
  if (mla_kernel(plan.shape) != MlaKernel::Fallback && step.num_tokens > 0)
    plan_fi(ctx, step, plan.shape, plan);
}

std::unique_ptr<AttentionPlan> plan_mla(const std::shared_ptr<Context>& ctx,
                                        const AttentionStep& step, const AttentionShape& shape) {
  std::unique_ptr<CudaMlaPlan> plan = mla_plan_base(step, shape);
  add_mla_append_slots(ctx, step, *plan);
  add_mla_levels(ctx, step, *plan);
  return plan;
}

bool is_mla_plan(const AttentionPlan& plan) {
  return dynamic_cast<const CudaMlaPlan*>(&plan) != nullptr;
}

void run_mla(const std::shared_ptr<Context>& ctx, const AttentionPlan& plan_base,
             const Tensor& q_mla, const Tensor& latent, Tensor kv_pages, Tensor out) {
  const auto* plan = dynamic_cast<const CudaMlaPlan*>(&plan_base);
  NC_CHECK(plan != nullptr, "mla_attention: the plan is not an MLA plan (latent_dim 0)");
  NC_CHECK(
      plan->expanded == nullptr,
      "mla_attention: the plan runs {} rows in the expanded form; mla_attention_values runs it",
      mla_expanded_rows(*plan));
  const AttentionShape& s = plan->shape;
  const int64_t T = plan->num_tokens, H = s.num_qo_heads, D = s.head_dim, Dl = s.latent_dim;
  expect_mla_rows(q_mla, T, H * D, "mla q");
  expect_mla_rows(out, T, H * Dl, "mla output");
  expect_mla_pages(kv_pages, s);
  cudaStream_t st = ctx->stream;
  if (plan->dst_page != nullptr) {  // the latent is read only to append it
    expect_mla_rows(latent, T, D, "mla latent");
    k_call([&] {
      cuda::mla_append_bf16(latent.data(), kv_pages.data(), plan->dst_page, plan->dst_slot, T,
                            s.kv.page_size, int(D), st);
    });
  }
  const size_t n = plan->levels.size();
  // The merge state: the plan's fixed buffers (graph plans), else from the pool.
  float *lse = plan->lse, *lse_level = plan->lse_level;
  void* o_level = plan->o_level;
  Tensor pooled[3];
  if (n > 1 && !lse) {
    pooled[0] = device_alloc(ctx, {T, H}, DType::F32);
    pooled[1] = device_alloc(ctx, {T, H}, DType::F32);
    pooled[2] = device_alloc(ctx, {T, H * Dl}, DType::BF16);
    lse = pooled[0].ptr<float>(), lse_level = pooled[1].ptr<float>(), o_level = pooled[2].data();
  }
  if (plan->kernel != MlaKernel::Fallback) {
    FiRun r;
    r.levels = &plan->fi;
    r.kernel = plan->kernel;
    r.float_ws = plan->fi_float ? plan->fi_float : ctx->attn_ws.ptr;
    NC_CHECK(plan->fi_float || ctx->attn_ws.bytes >= cuda::mla_fi_float_bytes(),
             "mla: float workspace of {} bytes, FlashInfer's MLA needs {}", ctx->attn_ws.bytes,
             cuda::mla_fi_float_bytes());
    r.q = q_mla.data();
    r.pages = kv_pages.data();
    r.out = out.data();
    r.lse = lse, r.lse_level = lse_level, r.o_level = o_level;
    r.rows = T, r.heads = int(H), r.page_size = s.kv.page_size, r.sm_scale = s.sm_scale;
    run_fi_levels(r, st);
    return;
  }
  for (size_t l = 0; l < n; ++l) {
    const bool first = l == 0;
    void* o = first ? out.data() : o_level;
    float* ls = n == 1 ? nullptr : (first ? lse : lse_level);
    k_call([&] {
      cuda::mla_attention_bf16(plan->levels[l], q_mla.data(), kv_pages.data(), o, ls, T, int(H),
                               int(D), int(Dl), s.sm_scale, st);
      if (!first)
        cuda::mla_merge_state_bf16(out.data(), lse, o_level, lse_level, T * H, int(Dl), st);
    });
  }
}

}  // namespace nc::cuda_host

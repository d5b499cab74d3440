// MLA's expanded form on CUDA (contract: cuda_mla_expanded.h).
#include "backend/cuda/cuda_mla_expanded.h"

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_mla.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/mla_kernels.h"
#include "backend/cuda/mla_plan.h"
#include "backend/cuda/pdl.h"
#include "backend/mla_form.h"

namespace nc::cuda_host {

// The expanded entries of a step and an absorbed plan of the rest (cuda_mla_expanded.h).
struct MlaExpandedPart {
  MlaDims d{};
  int64_t rows = 0;  // the expanded entries' query rows
  int64_t keys = 0;  // their keys, entry after entry
  Tensor q_rows;     // [rows] i32: each expanded row's row in the step
  Tensor key_slots;  // [keys] i32: page * page_size + slot of each key
  Tensor qo_indptr;  // [entries + 1] i32, over the expanded rows
  Tensor kv_indptr;  // [entries + 1] i32, over the keys
  const cuda::AttnKernelTable* table = nullptr;
  cuda::PlanInfo info;
  PooledStaging staging;  // the ragged plan's int workspace
  size_t int_bytes = 0;
  size_t float_bytes = 0;                   // of ctx->attn_ws its split-KV scratch needs
  std::unique_ptr<AttentionPlan> absorbed;  // the other entries' levels, no append slots (or null)
  Tensor absorbed_rows;                     // [their rows] i32: each one's row in the step
  int64_t absorbed_count = 0;
};

namespace {

// The CUDA backend's costs (mla_form.h), from `nc_gpu_bench mla-forms` on an H100 (2026-12-07,
// docs/benchmarks.md): with the projections at weight 1, Auto took a 256-row chunk after 4096
// cached tokens expanded at 16 heads (1.30x slower than absorbed) and a 512-token prompt too
// (1.16x); weight 2 moves the chunk threshold past 256 (absorbed and expanded tie there at 128
// heads), and a fixed 2^31 multiply-adds an entry (the gathers, the expansion's launches: about
// 10 us) keeps short prompts absorbed at 16 heads (62 against 72 us) but not at 128 (203 against
// 150 us).
constexpr MlaFormCosts kCudaCosts{2, int64_t(1) << 31};

// The dims, or H = 0 where the ragged kernel cannot take them (FA2's MMA tiles: head dims that
// are multiples of 16, at most 256; the copies move 8 values at a time).
MlaDims expanded_dims(const AttentionShape& s) {
  const int64_t Dl = s.latent_dim, Dr = s.head_dim - s.latent_dim;
  const int64_t Dn = s.mla_nope_dim, Dv = s.mla_v_dim, Dqk = Dn + Dr;
  const bool fits = Dn > 0 && Dv > 0 && Dqk % 16 == 0 && Dv % 16 == 0 && Dqk <= 256 && Dv <= 256 &&
                    Dn % 8 == 0 && Dr % 8 == 0 && Dl % 8 == 0;
  return fits ? MlaDims{s.num_qo_heads, s.head_dim, Dl, Dr, Dn, Dv} : MlaDims{};
}

// Level `lv`'s entry whose rows hold all of own entry b's rows [first, last) (every level's entries
// partition the step's rows), or -1.
int covering_entry(const PagedKVBatch& lv, int first, int last) {
  const auto it = std::upper_bound(lv.qo_indptr.begin(), lv.qo_indptr.end(), first);
  const int e = int(it - lv.qo_indptr.begin()) - 1;
  return e >= 0 && e < lv.batch_size() && lv.qo_indptr[size_t(e) + 1] >= last ? e : -1;
}

// Own entry b's keys in sequence order: its entry of each shared level (non-causal, all seen),
// then its own (causal); (level, entry) pairs, or empty where a level does not cover its rows.
std::vector<std::pair<int, int>> entry_levels(const AttentionStep& step, int b) {
  const PagedKVBatch& own = step.levels.back();
  const int first = own.qo_indptr[size_t(b)], last = own.qo_indptr[size_t(b) + 1];
  std::vector<std::pair<int, int>> out;
  for (size_t l = 0; l + 1 < step.levels.size(); ++l) {
    const int e = covering_entry(step.levels[l], first, last);
    if (e < 0) return {};
    out.emplace_back(int(l), e);
  }
  out.emplace_back(int(step.levels.size()) - 1, b);
  return out;
}

// Which own-level entries go expanded (empty: none). Their keys over every level, concatenated,
// under one causal mask aligned at the end are exactly the levels' masks (the shared levels
// precede and are seen whole), so an expanded entry needs no merge.
std::vector<char> choose_entries(const AttentionStep& step, const AttentionShape& s,
                                 const MlaDims& d) {
  const MlaForm form = mla_form();
  if (form == MlaForm::Absorbed || d.H == 0 || step.num_tokens == 0 || !step.levels.back().causal)
    return {};
  const PagedKVBatch& own = step.levels.back();
  const int ps = s.kv.page_size;
  const int64_t key_bytes = 2 * d.H * (d.Dn + d.Dr + d.Dv);
  std::vector<char> chosen(size_t(own.batch_size()), 0);
  int64_t bytes = 0;
  bool any = false;
  for (int b = 0; b < own.batch_size(); ++b) {
    const auto levels = entry_levels(step, b);
    if (own.q_len(b) == 0 || levels.empty()) continue;
    int64_t keys = 0;
    for (const auto& [l, e] : levels) keys += step.levels[size_t(l)].kv_len(e, ps);
    if (form == MlaForm::Auto && !mla_expanded_pays(own.q_len(b), keys, true, d, kCudaCosts))
      continue;
    if (bytes + keys * key_bytes > kExpandedBytes) continue;
    bytes += keys * key_bytes;
    chosen[size_t(b)] = 1;
    any = true;
  }
  return any ? chosen : std::vector<char>{};
}

// The ragged kernel's table, or null (logged once) where the JIT cannot provide it.
const cuda::AttnKernelTable* ragged_table(AttnRegistry& registry, const MlaDims& d) {
  cuda::AttnKernelKey key;
  key.kind = cuda::AttnKind::RaggedCausal;
  key.head_dim = int(d.Dn + d.Dr);
  key.head_dim_vo = int(d.Dv);
  try {
    return &registry.get(key);
  } catch (const Error& e) {
    static std::once_flag logged;
    std::call_once(logged, [&] {
      std::fprintf(stderr, "nc: mla: the expanded form is off (%s)\n", e.what());
    });
    return nullptr;
  }
}

// FlashInfer's plan of the ragged prefill over the expanded entries (host arrays in keys).
void plan_ragged(const std::shared_ptr<Context>& ctx, const std::vector<int32_t>& qo,
                 const std::vector<int32_t>& kv, MlaExpandedPart& x) {
  cuda::PlanQuery q;
  q.qo_indptr_h = qo.data();
  q.kv_indptr_h = kv.data();
  q.total_rows = int(x.rows);
  q.batch_size = int(qo.size()) - 1;
  q.num_qo_heads = int(x.d.H);
  q.num_kv_heads = int(x.d.H);  // expanded, every head has its own keys
  q.head_dim = int(x.d.Dn + x.d.Dr);
  q.head_dim_vo = int(x.d.Dv);
  q.page_size = 1;
  q.kernels = x.table;
  k_call([&] { cuda::prefill_workspace_size(q, &x.float_bytes, &x.int_bytes); });
  ctx->attn_ws.ensure(x.float_bytes);
  x.staging = PooledStaging(ctx, x.int_bytes);
  const Staging& st = x.staging.get();
  cuda::PlanWorkspace ws{ctx->attn_ws.ptr, ctx->attn_ws.bytes, st.dev, st.host, x.int_bytes};
  k_call([&] { x.info = cuda::prefill_plan(q, ws, ctx->stream); });
  cuda_check(cudaEventRecord(st.copied, ctx->stream), "cudaEventRecord");
}

// The step restricted to the rows not in `expanded` (renumbered in order): each level keeps its
// entries that hold such rows, with their pages.
AttentionStep absorbed_step(const AttentionStep& step, const std::vector<char>& expanded_row,
                            int page_size) {
  std::vector<int32_t> before(expanded_row.size() + 1, 0);  // absorbed rows before each row
  for (size_t r = 0; r < expanded_row.size(); ++r) before[r + 1] = before[r] + !expanded_row[r];
  AttentionStep sub;
  sub.num_tokens = before.back();
  for (const PagedKVBatch& lv : step.levels) {
    PagedKVBatch part;
    part.causal = lv.causal;
    const std::span<const int32_t> pages(lv.kv_indices);
    for (int e = 0; e < lv.batch_size(); ++e) {
      const int n =
          before[size_t(lv.qo_indptr[size_t(e) + 1])] - before[size_t(lv.qo_indptr[size_t(e)])];
      if (n > 0)
        part.add_pages(n, pages.subspan(size_t(lv.kv_indptr[size_t(e)]), size_t(lv.num_pages(e))),
                       lv.kv_len(e, page_size), page_size);
    }
    sub.levels.push_back(std::move(part));
  }
  return sub;
}

// The expanded entries' rows, keys and ragged plan; the others as a step of their own.
std::shared_ptr<MlaExpandedPart> plan_part(const std::shared_ptr<Context>& ctx,
                                           const AttentionStep& step, const AttentionShape& s,
                                           const std::vector<char>& chosen,
                                           const cuda::AttnKernelTable* table, const MlaDims& d) {
  const PagedKVBatch& own = step.levels.back();
  const int ps = s.kv.page_size;
  auto x = std::make_shared<MlaExpandedPart>();
  x->d = d;
  x->table = table;
  std::vector<int32_t> q_rows, slots, qo{0}, kv{0}, rest_rows;
  std::vector<char> expanded_row(size_t(step.num_tokens), 0);
  for (int b = 0; b < own.batch_size(); ++b) {
    const bool ex = chosen[size_t(b)];
    for (int r = own.qo_indptr[size_t(b)]; r < own.qo_indptr[size_t(b) + 1]; ++r) {
      (ex ? q_rows : rest_rows).push_back(r);
      expanded_row[size_t(r)] = char(ex);
    }
    if (!ex) continue;
    for (const auto& [l, e] : entry_levels(step, b)) {
      const PagedKVBatch& lv = step.levels[size_t(l)];
      const int32_t* pages = lv.kv_indices.data() + lv.kv_indptr[size_t(e)];
      for (int j = 0; j < lv.kv_len(e, ps); ++j) slots.push_back(pages[j / ps] * ps + j % ps);
    }
    qo.push_back(int32_t(q_rows.size()));
    kv.push_back(int32_t(slots.size()));
  }
  x->rows = int64_t(q_rows.size());
  x->keys = int64_t(slots.size());
  x->absorbed_count = int64_t(rest_rows.size());
  plan_ragged(ctx, qo, kv, *x);
  x->q_rows = mla_plan_array(ctx, std::move(q_rows));
  x->key_slots = mla_plan_array(ctx, std::move(slots));
  x->qo_indptr = mla_plan_array(ctx, std::move(qo));
  x->kv_indptr = mla_plan_array(ctx, std::move(kv));
  if (x->absorbed_count > 0) {
    // Attention only: run_mla_expanded appends every row's latent before either form runs.
    const AttentionStep rest = absorbed_step(step, expanded_row, ps);
    std::unique_ptr<CudaMlaPlan> absorbed = mla_plan_base(rest, s);
    add_mla_levels(ctx, rest, *absorbed);
    x->absorbed = std::move(absorbed);
    x->absorbed_rows = mla_plan_array(ctx, std::move(rest_rows));
  }
  return x;
}

Tensor rows_of(const std::shared_ptr<Context>& ctx, int64_t rows, int64_t width) {
  return device_alloc(ctx, {rows, width}, DType::BF16);
}

// k_nope [keys, H, Dn + Dr] (its first Dn of each head) = c W_UK, v [keys, H, Dv] = c W_UV^T per
// head (column-major views, as mla_head_linear: the shared c [keys, Dl] (ld Dl + Dr) has batch
// stride 0).
void project_keys_values(Context& ctx, const MlaDims& d, const Tensor& c, const Tensor& w_uk_t,
                         const Tensor& w_uv, Tensor k, Tensor v) {
  const int64_t N = c.dim(0), Dqk = d.Dn + d.Dr;
  const float alpha = 1.0f, beta = 0.0f;
  cublas_check(cublasGemmStridedBatchedEx(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(d.Dn), int(N),
                                          int(d.Dl), &alpha, w_uk_t.data(), CUDA_R_16BF, int(d.Dn),
                                          d.Dl * d.Dn, c.data(), CUDA_R_16BF, int(d.D), 0, &beta,
                                          k.data(), CUDA_R_16BF, int(d.H * Dqk), Dqk, int(d.H),
                                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "mla expanded keys: cublasGemmStridedBatchedEx");
  cublas_check(cublasGemmStridedBatchedEx(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(d.Dv), int(N),
                                          int(d.Dl), &alpha, w_uv.data(), CUDA_R_16BF, int(d.Dl),
                                          d.Dv * d.Dl, c.data(), CUDA_R_16BF, int(d.D), 0, &beta,
                                          v.data(), CUDA_R_16BF, int(d.H * d.Dv), d.Dv, int(d.H),
                                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "mla expanded values: cublasGemmStridedBatchedEx");
}

void run_expanded_entries(const std::shared_ptr<Context>& ctx, const CudaMlaPlan& plan,
                          const MlaExpandedPart& x, const Tensor& q, const Tensor& q_mla,
                          const Tensor& kv_pages, const Tensor& w_uk_t, const Tensor& w_uv,
                          Tensor attn) {
  const MlaDims& d = x.d;
  const int64_t Dqk = d.Dn + d.Dr;
  const cudaStream_t st = ctx->stream;
  Tensor c = rows_of(ctx, x.keys, d.D), k = rows_of(ctx, x.keys, d.H * Dqk),
         v = rows_of(ctx, x.keys, d.H * d.Dv), qe = rows_of(ctx, x.rows, d.H * Dqk),
         oe = rows_of(ctx, x.rows, d.H * d.Dv);
  k_call([&] {
    cuda::gather_rows_bf16(kv_pages.data(), d.D, x.key_slots.ptr<int32_t>(), c.data(), d.D, nullptr,
                           x.keys, int(d.D), st);
  });
  project_keys_values(*ctx, d, c, w_uk_t, w_uv, k, v);
  NC_CHECK(ctx->attn_ws.bytes >= x.float_bytes,
           "mla expanded: float workspace of {} bytes, the ragged plan needs {}",
           ctx->attn_ws.bytes, x.float_bytes);
  const Staging& stg = x.staging.get();
  const cuda::PlanWorkspace ws{ctx->attn_ws.ptr, ctx->attn_ws.bytes, stg.dev, stg.host,
                               x.int_bytes};
  cuda::RaggedKV kv{k.data(), v.data(), x.kv_indptr.ptr<int32_t>(), int(d.H), int(Dqk), int(d.Dv)};
  cuda::AttnIO io;
  io.q = qe.data();
  io.o = oe.data();
  io.num_qo_heads = int(d.H);
  io.sm_scale = plan.shape.sm_scale;
  io.pdl = cuda::pdl_enabled();
  k_call([&] {
    cuda::mla_expand_k_pe_bf16(c.data(), x.keys, int(d.H), int(d.Dn), int(d.Dr), int(d.Dl),
                               k.data(), st);
    cuda::mla_expand_q_bf16(q.data(), q_mla.data(), x.q_rows.ptr<int32_t>(), x.rows, int(d.H),
                            int(d.Dn), int(d.Dr), int(d.Dl), qe.data(), st);
    x.table->ragged_run(x.info, ws, kv, x.qo_indptr.ptr<int32_t>(), io, st);
    cuda::gather_rows_bf16(oe.data(), d.H * d.Dv, nullptr, attn.data(), d.H * d.Dv,
                           x.q_rows.ptr<int32_t>(), x.rows, int(d.H * d.Dv), st);
  });
}

// The absorbed form over the other entries' rows, gathered into scratch and scattered back.
// Their latents are in the pages already (run_mla_expanded appends every row's first).
void run_absorbed_rest(const std::shared_ptr<Context>& ctx, const MlaExpandedPart& x,
                       const Tensor& q, const Tensor& q_mla, Tensor kv_pages, const Tensor& w_uk_t,
                       const Tensor& w_uv, Tensor o_lat, Tensor attn) {
  const MlaDims& d = x.d;
  const int64_t n = x.absorbed_count, wq = q.dim(1), wm = d.H * d.D, wa = d.H * d.Dv;
  const int32_t* rows = x.absorbed_rows.ptr<int32_t>();
  const cudaStream_t st = ctx->stream;
  Tensor qa = rows_of(ctx, n, wq), qma = rows_of(ctx, n, wm), aa = rows_of(ctx, n, wa);
  k_call([&] {
    cuda::gather_rows_bf16(q.data(), wq, rows, qa.data(), wq, nullptr, n, int(wq), st);
    cuda::gather_rows_bf16(q_mla.data(), wm, rows, qma.data(), wm, nullptr, n, int(wm), st);
  });
  Tensor ola = o_lat.slice(0, n);
  mla_head_linear(*ctx, qa, w_uk_t, qma);
  run_mla(ctx, *x.absorbed, qma, Tensor{}, kv_pages, ola);  // no append slots: no latent read
  mla_head_linear(*ctx, ola, w_uv, aa);
  k_call([&] {
    cuda::gather_rows_bf16(aa.data(), wa, nullptr, attn.data(), wa, rows, n, int(wa), st);
  });
}

}  // namespace

std::unique_ptr<AttentionPlan> plan_mla_step(const std::shared_ptr<Context>& ctx,
                                             AttnRegistry& registry, const AttentionStep& step,
                                             const AttentionShape& shape) {
  std::unique_ptr<CudaMlaPlan> plan = mla_plan_base(step, shape);  // checks the step first
  add_mla_append_slots(ctx, step, *plan);
  const MlaDims d = expanded_dims(shape);
  const std::vector<char> chosen = choose_entries(step, shape, d);
  const cuda::AttnKernelTable* table = chosen.empty() ? nullptr : ragged_table(registry, d);
  if (table == nullptr || table->ragged_run == nullptr)
    add_mla_levels(ctx, step, *plan);  // every entry absorbed
  else
    plan->expanded = plan_part(ctx, step, shape, chosen, table, d);  // levels of the rest only
  return plan;
}

bool run_mla_expanded(const std::shared_ptr<Context>& ctx, const AttentionPlan& plan_base,
                      const Tensor& q, const Tensor& q_mla, const Tensor& latent, Tensor kv_pages,
                      const Tensor& w_uk_t, const Tensor& w_uv, Tensor o_lat, Tensor attn) {
  const auto* plan = dynamic_cast<const CudaMlaPlan*>(&plan_base);
  if (plan == nullptr || plan->expanded == nullptr) return false;
  const MlaExpandedPart& x = *plan->expanded;
  const MlaDims& d = x.d;
  const int64_t T = plan->num_tokens;
  expect_mla_rows(q, T, d.H * (d.Dn + d.Dr), "mla q");
  expect_mla_rows(q_mla, T, d.H * d.D, "mla q_mla");
  expect_mla_rows(latent, T, d.D, "mla latent");
  expect_mla_rows(attn, T, d.H * d.Dv, "mla attn");
  expect_mla_rows(o_lat, T, d.H * d.Dl, "mla o_lat");
  NC_CHECK(w_uk_t.shape() == Shape({d.H, d.Dl, d.Dn}) && w_uv.shape() == Shape({d.H, d.Dv, d.Dl}),
           "mla: w_uk_t {} and w_uv {} for {} heads of latent {}, nope {}, value {}",
           shape_str(w_uk_t.shape()), shape_str(w_uv.shape()), d.H, d.Dl, d.Dn, d.Dv);
  const AttentionShape& s = plan->shape;
  expect_mla_pages(kv_pages, s);
  // Every row's latent first: an expanded entry reads its own new rows from the pages (the
  // absorbed rest's plan has no append slots).
  k_call([&] {
    cuda::mla_append_bf16(latent.data(), kv_pages.data(), plan->dst_page, plan->dst_slot, T,
                          s.kv.page_size, int(d.D), ctx->stream);
  });
  run_expanded_entries(ctx, *plan, x, q, q_mla, kv_pages, w_uk_t, w_uv, attn);
  if (x.absorbed != nullptr)
    run_absorbed_rest(ctx, x, q, q_mla, kv_pages, w_uk_t, w_uv, o_lat, attn);
  return true;
}

int64_t mla_expanded_rows(const AttentionPlan& plan) {
  const auto* p = dynamic_cast<const CudaMlaPlan*>(&plan);
  return p != nullptr && p->expanded != nullptr ? p->expanded->rows : 0;
}

}  // namespace nc::cuda_host

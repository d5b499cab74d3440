// Eager attention plans, the run of any plan, and the kernel choice (cuda_attention.h).
#include "backend/cuda/cuda_attention.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "backend/cuda/decode_choice.h"
#include "backend/cuda/fp8_decode_rule.h"

namespace nc::cuda_host {
namespace {

void validate_step(const AttentionStep& step, const AttentionShape& shape) {
  validate_attention_shape(shape);
  NC_CHECK(!step.levels.empty(), "attention plan: no levels");
  NC_CHECK(step.num_tokens >= 0, "attention plan: negative token count");
  const int page_size = shape.kv.page_size;
  for (const PagedKVBatch& level : step.levels)
    level.validate(step.num_tokens, page_size, shape.kv.num_pages);
  const PagedKVBatch& last = step.levels.back();
  for (int b = 0; b < last.batch_size(); ++b) {
    NC_CHECK(last.kv_len(b, page_size) >= last.q_len(b),
             "attention plan: last-level entry {} has {} new tokens but only {} slots", b,
             last.q_len(b), last.kv_len(b, page_size));
  }
}

// The append slots: row i of entry b goes to position kv_len - q_len + i of that entry.
void stage_append_slots(const CudaAttentionPlan& plan, const PagedKVBatch& last) {
  int32_t* bi = plan.staging.host_ptr(plan.batch_indices);
  int32_t* pos = plan.staging.host_ptr(plan.positions);
  for (int b = 0; b < last.batch_size(); ++b) {
    const int kv_len = last.kv_len(b, plan.shape.kv.page_size), q_len = last.q_len(b);
    for (int i = 0; i < q_len; ++i) {
      bi[last.qo_indptr[b] + i] = b;
      pos[last.qo_indptr[b] + i] = kv_len - q_len + i;
    }
  }
}

const CudaAttentionPlan& cuda_plan(const AttentionPlan& plan, const char* what) {
  const auto* p = dynamic_cast<const CudaAttentionPlan*>(&plan);
  NC_CHECK(p != nullptr, "{}: not a CUDA plan", what);
  return *p;
}

}  // namespace

std::unique_ptr<AttentionPlan> CudaAttention::plan(const AttentionStep& step,
                                                   const AttentionShape& shape) {
  validate_step(step, shape);
  if (const int rows = fp8_decode_rows_to_split(step, shape); rows > 0)
    return plan_split(step, shape, rows);
  return plan_unsplit(step, shape);
}

std::unique_ptr<AttentionPlan> CudaAttention::plan_unsplit(const AttentionStep& step,
                                                           const AttentionShape& shape) {
  validate_step(step, shape);
  auto plan = std::make_unique<CudaAttentionPlan>(ctx_);
  plan->shape = shape;
  plan->num_tokens = step.num_tokens;
  // The staging region: our CSR arrays and the append slots (copied in one go), then
  // FlashInfer's int workspaces (each level's plan copies its own).
  StagingLayout lay;
  lay_out_levels(*plan, step, lay);
  const size_t metadata_bytes = lay.size();
  int num_shared = 0;  // shared levels with entries
  for (size_t l = 0; l + 1 < step.levels.size(); ++l) num_shared += step.levels[l].batch_size() > 0;
  plan->overlap = options_.overlap_cascade_levels && num_shared > 0 && step.num_tokens > 0;
  if (plan->overlap) ctx_->ensure_side_stream();
  const std::vector<cuda::PlanQuery> queries = choose_kernels(*plan, step, lay);

  plan->owned_staging = PooledStaging(ctx_, lay.size());
  plan->staging = StagingView(plan->owned_staging.get());
  for (size_t l = 0; l < step.levels.size(); ++l)
    stage_level(plan->staging, plan->levels[l].arrays, step.levels[l]);
  stage_append_slots(*plan, step.levels.back());
  plan_levels(*plan, queries);
  const Staging& staging = plan->owned_staging.get();
  cuda_check(cudaMemcpyAsync(staging.dev, staging.host, metadata_bytes, cudaMemcpyHostToDevice,
                             ctx_->stream),
             "attention plan metadata copy");
  cuda_check(cudaEventRecord(staging.copied, ctx_->stream), "cudaEventRecord");
  if (step.levels.size() > 1 && step.num_tokens > 0) allocate_cascade_state(*plan, num_shared);
  return plan;
}

void CudaAttention::lay_out_levels(CudaAttentionPlan& plan, const AttentionStep& step,
                                   StagingLayout& lay) {
  plan.levels.resize(step.levels.size());
  for (size_t l = 0; l < step.levels.size(); ++l) {
    const PagedKVBatch& in = step.levels[l];
    LevelPlan& lp = plan.levels[l];
    lp.batch_size = in.batch_size();
    lp.causal = in.causal;
    lp.arrays.qo_indptr = lay.add<int32_t>(in.qo_indptr.size());
    lp.arrays.kv_indptr = lay.add<int32_t>(in.kv_indptr.size());
    lp.arrays.kv_indices = lay.add<int32_t>(in.kv_indices.size());
    lp.arrays.last_page_len = lay.add<int32_t>(in.kv_last_page_len.size());
  }
  plan.batch_indices = lay.add<int32_t>(size_t(step.num_tokens));
  plan.positions = lay.add<int32_t>(size_t(step.num_tokens));
}

// Per active level: its kernel, its int workspace region (after the metadata) and whether it
// runs on the side stream; grows the streams' split-KV workspaces to what the levels need.
std::vector<cuda::PlanQuery> CudaAttention::choose_kernels(CudaAttentionPlan& plan,
                                                           const AttentionStep& step,
                                                           StagingLayout& lay) {
  const AttentionShape& shape = plan.shape;
  size_t float_need = 0, side_float_need = 0;
  std::vector<cuda::PlanQuery> queries(step.levels.size());
  for (size_t l = 0; l < step.levels.size(); ++l) {
    const PagedKVBatch& in = step.levels[l];
    LevelPlan& lp = plan.levels[l];
    if (!plan.active(lp)) continue;
    cuda::PlanQuery& q = queries[l];
    q = {.qo_indptr_h = in.qo_indptr.data(),
         .kv_indptr_h = in.kv_indptr.data(),
         .total_rows = plan.num_tokens,
         .batch_size = lp.batch_size,
         .num_qo_heads = shape.num_qo_heads,
         .num_kv_heads = shape.num_kv_heads,
         .head_dim = shape.head_dim,
         .page_size = shape.kv.page_size};
    q.kv_last_page_len_h = in.kv_last_page_len.data();
    q.window_left = l + 1 == step.levels.size() ? shape.window_left : -1;
    lp.kernel = level_kernel(in, shape);
    if (lp.kernel != LevelKernel::SM90Prefill && lp.kernel != LevelKernel::Generic) {
      lp.table = kernel_table(lp.kernel, lp.causal, l + 1 == step.levels.size(), shape);
      q.kernels = lp.table;
    }
    size_t fb = 0, ib = 0;
    level_workspace_size(lp.kernel, q, &fb, &ib);
    lp.arrays.int_ws = lay.add<std::byte>(int_region_bytes(ib));
    lp.side = plan.overlap && l + 1 < step.levels.size();
    size_t& need = lp.side ? side_float_need : float_need;
    need = std::max(need, fb);
  }
  ctx_->attn_ws.ensure(float_need);
  if (plan.overlap) ctx_->side_ws.ensure(side_float_need);
  return queries;
}

// Per-step merge buffers: a level's output and two LSE arrays; with overlap and two or more
// shared levels, a second shared state.
void CudaAttention::allocate_cascade_state(CudaAttentionPlan& plan, int num_shared) {
  const size_t rows = size_t(plan.num_tokens) * plan.shape.num_qo_heads;
  const size_t out_bytes = rows * plan.shape.head_dim * 2;
  CascadeState& c = plan.cascade;
  StreamBuffers& buf = plan.owned_buffers;
  c.level_out = buf.get(out_bytes);
  c.lse_main = static_cast<float*>(buf.get(rows * 4));
  c.lse_level = static_cast<float*>(buf.get(rows * 4));
  if (plan.overlap && num_shared > 1) {
    c.level_out2 = buf.get(out_bytes);
    c.lse_level2 = static_cast<float*>(buf.get(rows * 4));
  }
}

void CudaAttention::run(const AttentionPlan& plan_base, const Tensor& q, const Tensor& k,
                        const Tensor& v, Tensor kv_pages, Tensor out, bool append) {
  const auto* plan = dynamic_cast<const CudaAttentionPlan*>(&plan_base);
  NC_CHECK(plan != nullptr && plan->ctx == ctx_, "attention: plan was not made by this backend");
  const AttentionShape& sh = plan->shape;
  const int64_t T = plan->num_tokens, Hq = sh.num_qo_heads, Hk = sh.num_kv_heads, D = sh.head_dim;
  q.expect_shape({T, Hq * D}, "attention q");
  k.expect_shape({T, Hk * D}, "attention k");
  v.expect_shape({T, Hk * D}, "attention v");
  out.expect_shape({T, Hq * D}, "attention output");
  for (const Tensor* t : {&q, static_cast<const Tensor*>(&out)}) {
    expect_bf16(*t, "attention");
    t->expect_contiguous("attention");
  }
  expect_kv_pages(kv_pages, sh.kv, "attention kv pages");
  for (const Tensor* t : {&k, &v}) {
    expect_bf16(*t, "attention");
    NC_CHECK(t->strides().back() == 1, "attention: k/v rows must be contiguous");
  }
  NC_CHECK(kv_pages.numel() == int64_t(sh.kv.num_pages) * sh.kv.elems_per_page(),
           "attention: kv pages {} do not hold {} pages of {} elements",
           shape_str(kv_pages.shape()), sh.kv.num_pages, sh.kv.elems_per_page());
  if (T == 0) return;
  if (plan->split_head != nullptr) return run_split(*plan, q, k, v, kv_pages, out, append);
  run_levels(*plan, q, k, v, kv_pages, out, append);
}

// Head dims FlashInfer's kernels cannot take (96) run our kernel on every level (attn_generic.h).
// An fp8 cache decodes through the decode table, which runs our tensor-core FP8 kernel
// (attn_decode_fp8.cuh, fp8_decode_rule.h) for head dims 64/128 without a window or soft cap.
// Where that kernel does not serve (or NC_FP8_DECODE_IMPL=fi), FlashInfer's kernels as measured
// on an H100 (2026-12-06, docs/benchmarks.md "FP8 KV cache"): its CUDA-core kernel converts e4m3
// once per query head and from GQA group 4 took 1.2-1.4x the bf16 kernel's time, so groups 1-2
// take its CUDA-core kernel (two tokens a stage, attn_decode.cuh) and larger groups its
// tensor-core prefill kernel. NC_FP8_DECODE_KERNEL=cc or tc forces the decode table (cc) or the
// prefill kernel (tc) on every fp8 decode level (A/B).
// 1: the decode table, 0: the prefill kernel, -1: not an fp8 cache (the bf16 rules apply).
int fp8_takes_decode_table(const AttentionShape& sh) {
  static const int forced = [] {  // the environment, read once: 1 cc, 0 tc, -1 unset
    const char* e = std::getenv("NC_FP8_DECODE_KERNEL");
    const std::string v = e != nullptr ? e : "";
    return v == "cc" ? 1 : v == "tc" ? 0 : -1;
  }();
  if (!sh.kv.fp8) return -1;
  if (forced >= 0) return forced;
  const int group = sh.num_qo_heads / sh.num_kv_heads;
  if (cuda::own_fp8_decode_serves(group, sh.head_dim, sh.window_left >= 0, sh.logits_soft_cap > 0))
    return 1;
  return group <= 2 ? 1 : 0;
}

LevelKernel CudaAttention::level_kernel(const PagedKVBatch& in, const AttentionShape& sh) const {
  if (cuda::generic_attention_serves(sh.head_dim)) return LevelKernel::Generic;
  auto decode = [&] {
    if (options_.decode_kernel == DecodeKernel::TensorCores) return false;
    if (!cuda::decode_supported(sh.num_qo_heads, sh.num_kv_heads, sh.head_dim)) return false;
    int64_t keys = 0;
    for (int b = 0; b < in.batch_size(); ++b) {
      // The decode kernel takes one query row and at least one key per entry.
      if (in.q_len(b) != 1 || in.num_pages(b) == 0) return false;
      keys += in.kv_len(b, sh.kv.page_size);
    }
    if (options_.decode_kernel == DecodeKernel::CudaCores) return true;
    if (const int fp8_table = fp8_takes_decode_table(sh); fp8_table >= 0) return fp8_table == 1;
    // Auto: the measured table (decode_choice.cc), from host data only.
    const int batch = std::max(1, in.batch_size());
    return auto_decode_kernel(sh.num_qo_heads / sh.num_kv_heads, sh.head_dim, batch,
                              int(keys / batch)) == DecodeKernel::CudaCores;
  };
  if (decode()) return LevelKernel::Decode;
  if (!in.causal && use_sm90_kernel(sh, in)) return LevelKernel::SM90Prefill;
  return LevelKernel::Prefill;
}

// Graph plans: by option, else by the graph table (by batch size only: a graph serves every
// context of its batch size).
LevelKernel CudaAttention::graph_own_kernel(const AttentionShape& sh, int batch) const {
  // Groups FlashInfer's decode has no instance for (5, 7, 10, ...: Qwen2.5-7B/14B/32B) run FA2,
  // as level_kernel() does for eager plans, whatever the option asks.
  if (!cuda::generic_attention_serves(sh.head_dim) &&
      !cuda::decode_supported(sh.num_qo_heads, sh.num_kv_heads, sh.head_dim))
    return LevelKernel::Prefill;
  switch (options_.decode_kernel) {
    case DecodeKernel::CudaCores:
      return LevelKernel::Decode;
    case DecodeKernel::TensorCores:
      return LevelKernel::Prefill;
    case DecodeKernel::Auto:
      break;
  }
  if (const int fp8_table = fp8_takes_decode_table(sh); fp8_table >= 0)
    return fp8_table == 1 ? LevelKernel::Decode : LevelKernel::Prefill;
  return graph_decode_kernel(sh.num_qo_heads / sh.num_kv_heads, sh.head_dim, batch) ==
                 DecodeKernel::TensorCores
             ? LevelKernel::Prefill
             : LevelKernel::Decode;
}

// Non-causal levels on FlashInfer's Hopper prefill: by option, NC_SHARED_LEVEL_KERNEL=fa2
// (Auto only) and what the GPU and head_dim allow. Auto takes it only for entries of 128 rows
// or more: on the H100 (nc_gpu_bench cascade-ab, 2026-11-27) it beat FA2 at 128 and 256
// rows (e.g. 205 vs 232 us at prefix 32k) but lost at 64 (245 vs 236 us; 167 vs 131 us GQA).
// Soft-capped levels take it too (FlashInfer's LogitsSoftCap variant, attn_prefill_sm90.cu); a
// shared level is never windowed.
// FP8 pages never take it: FlashInfer's sm90 (FA3) templates multiply Q and K in one wgmma, whose
// operands must share a type (bf16 x bf16 or e4m3 x e4m3), and its FP8 path wants FP8 queries
// too; so FP8 shared levels run FA2, which dequantises the tiles to bf16 in shared memory.
bool CudaAttention::use_sm90_kernel(const AttentionShape& sh, const PagedKVBatch& level) const {
  if (sh.kv.fp8) return false;
  if (options_.shared_level_kernel == SharedLevelKernel::FA2) return false;
  if (options_.shared_level_kernel == SharedLevelKernel::Auto) {
    const char* env = std::getenv("NC_SHARED_LEVEL_KERNEL");
    if (env != nullptr && std::string(env) == "fa2") return false;
    int most_rows = 0;
    for (int b = 0; b < level.batch_size(); ++b) most_rows = std::max(most_rows, level.q_len(b));
    if (most_rows < 128) return false;
  }
  return cuda::sm90_prefill_available(sh.num_qo_heads, sh.num_kv_heads, sh.head_dim);
}

const cuda::AttnKernelTable* CudaAttention::kernel_table(LevelKernel kernel, bool causal, bool own,
                                                         const AttentionShape& sh) const {
  const cuda::AttnKernelKey key = level_key(kernel, causal, own, sh);
  const cuda::AttnKernelTable* t = &registry_->get(key);
  const bool has_run =
      key.kind == cuda::AttnKind::Decode ? t->decode_run != nullptr : t->prefill_run != nullptr;
  NC_CHECK(has_run, "attention: kernel table {} lacks its run function",
           cuda::attn_key_string(key));
  return t;
}

std::vector<LevelKernel> plan_level_kernels(const AttentionPlan& plan, const char* what) {
  const CudaAttentionPlan& p = cuda_plan(plan, what);
  if (p.split_head != nullptr) {  // the decode rows' level, then the rest's
    std::vector<LevelKernel> out = plan_level_kernels(*p.split_head, what);
    for (LevelKernel k : plan_level_kernels(*p.split_tail, what)) out.push_back(k);
    return out;
  }
  std::vector<LevelKernel> out;
  for (const LevelPlan& lp : p.levels) out.push_back(lp.kernel);
  return out;
}

}  // namespace nc::cuda_host

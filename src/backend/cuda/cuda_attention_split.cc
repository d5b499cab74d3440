// A mixed prefill/decode step over fp8 pages, split by rows (cuda_attention.h).
//
// A level with any multi-row entry runs FA2's prefill kernel for all its entries, the one-row
// (decode) entries included; over fp8 pages FA2 reads those entries' K/V well below the copy rate
// (it dequantises tiles in shared memory), while the decode table's kernel (our FP8 kernel,
// attn_decode_fp8.cuh, where fp8_decode_rule.h lets it; FlashInfer's CUDA-core kernel elsewhere)
// reads them near it. nano-vLLM's workload on the Qwen3-0.6B shape (H100,
// 2026-12-06): its 75 mixed steps took 10.1 ms each over fp8 pages against 8.9 over bf16. The
// scheduler puts decode entries first (Scheduler::schedule; in another order only the leading run
// splits off), so a one-level step's leading one-row entries own rows [0, n) of q/k/v/out: they
// become one plan, the other entries another, each
// over the same pages, appending its own rows; their outputs are disjoint rows, so nothing merges.
// Cascade steps (shared levels) are not split.
#include <span>

#include "backend/cuda/attn_generic.h"
#include "backend/cuda/cuda_attention.h"
#include "backend/cuda/kernels.h"

namespace nc::cuda_host {
namespace {

// Entries [first, last) of a one-level step, as a step of their own.
AttentionStep sub_step(const AttentionStep& step, int first, int last, int page_size) {
  const PagedKVBatch& own = step.levels[0];
  PagedKVBatch part;
  part.causal = own.causal;
  const std::span<const int32_t> pages(own.kv_indices);
  for (int e = first; e < last; ++e)
    part.add_pages(own.q_len(e), pages.subspan(size_t(own.kv_indptr[e]), size_t(own.num_pages(e))),
                   own.kv_len(e, page_size), page_size);
  AttentionStep out;
  out.num_tokens = own.qo_indptr[last] - own.qo_indptr[first];
  out.levels.push_back(std::move(part));
  return out;
}

}  // namespace

int CudaAttention::fp8_decode_rows_to_split(const AttentionStep& step,
                                            const AttentionShape& sh) const {
  if (!sh.kv.fp8 || step.levels.size() != 1 || options_.decode_kernel != DecodeKernel::Auto ||
      fp8_takes_decode_table(sh) != 1 || cuda::generic_attention_serves(sh.head_dim) ||
      !cuda::decode_supported(sh.num_qo_heads, sh.num_kv_heads, sh.head_dim))
    return 0;
  const PagedKVBatch& own = step.levels[0];
  int n = 0;
  while (n < own.batch_size() && own.q_len(n) == 1 && own.num_pages(n) > 0) ++n;
  return n < own.batch_size() ? n : 0;  // all one-row entries: the plain plan decodes them
}

std::unique_ptr<AttentionPlan> CudaAttention::plan_split(const AttentionStep& step,
                                                         const AttentionShape& shape, int rows) {
  auto plan = std::make_unique<CudaAttentionPlan>(ctx_);
  plan->shape = shape;
  plan->num_tokens = step.num_tokens;
  plan->split_rows = rows;
  const int entries = step.levels[0].batch_size(), page_size = shape.kv.page_size;
  plan->split_head = this->plan(sub_step(step, 0, rows, page_size), shape);
  plan->split_tail = this->plan(sub_step(step, rows, entries, page_size), shape);
  return plan;
}

void CudaAttention::run_split(const CudaAttentionPlan& plan, const Tensor& q, const Tensor& k,
                              const Tensor& v, Tensor kv_pages, Tensor out, bool append) {
  const int64_t n = plan.split_rows, T = plan.num_tokens;
  run(*plan.split_head, q.slice(0, n), k.slice(0, n), v.slice(0, n), kv_pages, out.slice(0, n),
      append);
  run(*plan.split_tail, q.slice(n, T), k.slice(n, T), v.slice(n, T), kv_pages, out.slice(n, T),
      append);
}

}  // namespace nc::cuda_host

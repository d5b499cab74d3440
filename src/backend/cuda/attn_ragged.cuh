// Batch prefill over ragged K/V with a causal mask (FlashInfer's FA2 kernel), whose queries and
// keys have one head dim and whose values another (MLA's expanded form: [q_nope | q_pe] against
// [W_UK c | k_pe], values W_UV c; cuda_mla_expanded.h). One instantiation per (head dims, variant),
// compiled at run time only (attn_jit_entry.cuh with NC_ATTN_KIND 3).
#pragma once
#include <flashinfer/attention/prefill.cuh>

#include "backend/cuda/attn_common.cuh"

namespace nc::cuda {

using RaggedParams = flashinfer::BatchPrefillRaggedParams<bf16, bf16, bf16, int32_t>;

template <uint32_t HEAD_DIM_QK, uint32_t HEAD_DIM_VO, bool WINDOW, bool SOFT_CAP>
void ragged_run_hd(const PlanInfo& plan_vec, const PlanWorkspace& ws, const RaggedKV& kv,
                   int32_t* qo_indptr, const AttnIO& io, cudaStream_t stream) {
  flashinfer::PrefillPlanInfo plan;
  plan.FromVector(plan_vec);
  RaggedParams p;
  p.q = static_cast<bf16*>(const_cast<void*>(io.q));
  p.k = static_cast<bf16*>(const_cast<void*>(kv.k));
  p.v = static_cast<bf16*>(const_cast<void*>(kv.v));
  p.o = static_cast<bf16*>(io.o);
  p.lse = io.lse;
  p.q_indptr = qo_indptr;
  p.kv_indptr = kv.kv_indptr;
  p.num_qo_heads = io.num_qo_heads;
  p.num_kv_heads = kv.num_kv_heads;
  p.group_size = flashinfer::uint_fastdiv(io.num_qo_heads / kv.num_kv_heads);
  p.q_stride_n = io.num_qo_heads * HEAD_DIM_QK;
  p.q_stride_h = HEAD_DIM_QK;
  p.k_stride_n = kv.num_kv_heads * HEAD_DIM_QK;
  p.k_stride_h = HEAD_DIM_QK;
  p.v_stride_n = kv.num_kv_heads * HEAD_DIM_VO;
  p.v_stride_h = HEAD_DIM_VO;
  p.window_left = io.window_left;
  p.logits_soft_cap = io.logits_soft_cap;
  p.sm_scale = io.sm_scale;
  p.rope_rcp_scale = 1.0f;
  p.rope_rcp_theta = 1.0f / 1e4f;
  const PrefillScratch tmp = set_prefill_plan(p, plan, ws);
  fi_call("batch ragged prefill", [&] {
    return with_cta_tile_q(plan.cta_tile_q, [&](auto tile) {
      return flashinfer::BatchPrefillWithRaggedKVCacheDispatched<
          decltype(tile)::value, HEAD_DIM_QK, HEAD_DIM_VO, flashinfer::PosEncodingMode::kNone,
          /*USE_FP16_QK_REDUCTION=*/false, flashinfer::MaskMode::kCausal, Variant<WINDOW, SOFT_CAP>,
          RaggedParams>(p, tmp.v, tmp.s, io.pdl, stream);
    });
  });
}

// The table of one ragged configuration (attn_kernels.h); `key` must outlive it (a literal).
template <uint32_t HEAD_DIM_QK, uint32_t HEAD_DIM_VO, bool WINDOW, bool SOFT_CAP>
const AttnKernelTable* ragged_table(const char* key) {
  static const AttnKernelTable table{
      kAttnTableAbi, key,     nullptr,
      nullptr,       nullptr, &ragged_run_hd<HEAD_DIM_QK, HEAD_DIM_VO, WINDOW, SOFT_CAP>};
  return &table;
}

}  // namespace nc::cuda

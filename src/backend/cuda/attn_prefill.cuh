// Batch prefill over paged KV (FlashInfer's FA2 kernel), one head dim, mask, variant and page
// element type (KV: bf16, or fp8 with the params' v_scale) per instantiation; attn_prefill_*.cu
// instantiate it ahead of time (one file each, so the heavy kernels compile in parallel),
// attn_jit_entry.cuh at run time.
#pragma once
#include <flashinfer/attention/prefill.cuh>

#include "backend/cuda/attn_common.cuh"

namespace nc::cuda {

template <uint32_t HEAD_DIM, flashinfer::MaskMode MASK, bool WINDOW, bool SOFT_CAP,
          typename KV = bf16>
void prefill_run_hd(const PlanInfo& plan_vec, const PlanWorkspace& ws, const PagedKV& kv,
                    int32_t* qo_indptr, const AttnIO& io, cudaStream_t stream) {
  flashinfer::PrefillPlanInfo plan;
  plan.FromVector(plan_vec);
  using Params = PrefillParamsT<KV>;
  Params p;
  set_common_params(p, kv, io);
  p.q_indptr = qo_indptr;
  p.group_size = flashinfer::uint_fastdiv(io.num_qo_heads / kv.num_kv_heads);
  const PrefillScratch tmp = set_prefill_plan(p, plan, ws);
  fi_call("batch prefill", [&] {
    return with_cta_tile_q(plan.cta_tile_q, [&](auto tile) {
      return flashinfer::BatchPrefillWithPagedKVCacheDispatched<
          /*SAME_KV_STRIDES=*/true, decltype(tile)::value, HEAD_DIM, HEAD_DIM,
          flashinfer::PosEncodingMode::kNone, /*USE_FP16_QK_REDUCTION=*/false, MASK,
          Variant<WINDOW, SOFT_CAP>, Params>(p, tmp.v, tmp.s, io.pdl, stream);
    });
  });
}

}  // namespace nc::cuda

namespace nc::cuda {

// The table of one prefill configuration (attn_kernels.h); `key` must outlive it (a literal).
template <uint32_t HEAD_DIM, flashinfer::MaskMode MASK, bool WINDOW, bool SOFT_CAP,
          typename KV = bf16>
const AttnKernelTable* prefill_table(const char* key) {
  static const AttnKernelTable table{kAttnTableAbi, key, nullptr, nullptr,
                                     &prefill_run_hd<HEAD_DIM, MASK, WINDOW, SOFT_CAP, KV>};
  return &table;
}

}  // namespace nc::cuda

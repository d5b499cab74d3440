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
  set_work_indices(p, plan, ws);
  p.q_indptr = qo_indptr;
  p.group_size = flashinfer::uint_fastdiv(io.num_qo_heads / kv.num_kv_heads);
  p.qo_tile_indices = at_offset<int32_t>(ws.int_ws, plan.qo_tile_indices_offset);
  bf16* tmp_v = nullptr;
  float* tmp_s = nullptr;
  if (plan.split_kv) {
    p.merge_indptr = at_offset<int32_t>(ws.int_ws, plan.merge_indptr_offset);
    tmp_v = at_offset<bf16>(ws.float_ws, plan.v_offset);
    tmp_s = at_offset<float>(ws.float_ws, plan.s_offset);
  }
  p.max_total_num_rows = plan.total_num_rows;
  if (plan.enable_cuda_graph) {
    p.block_valid_mask = at_offset<bool>(ws.int_ws, plan.block_valid_mask_offset);
    p.total_num_rows = at_offset<uint32_t>(ws.int_ws, plan.total_num_rows_offset);
  }
  fi_call("batch prefill", [&] {
    cudaError_t st = cudaErrorInvalidValue;
    switch (plan.cta_tile_q) {
#define NC_PREFILL_TILE(T)                                                                   \
  case T:                                                                                    \
    st = flashinfer::BatchPrefillWithPagedKVCacheDispatched<                                 \
        /*SAME_KV_STRIDES=*/true, T, HEAD_DIM, HEAD_DIM, flashinfer::PosEncodingMode::kNone, \
        /*USE_FP16_QK_REDUCTION=*/false, MASK, Variant<WINDOW, SOFT_CAP>, Params>(           \
        p, tmp_v, tmp_s, /*enable_pdl=*/false, stream);                                      \
    break;
      NC_PREFILL_TILE(16)
      NC_PREFILL_TILE(64)
      NC_PREFILL_TILE(128)
#undef NC_PREFILL_TILE
      default:
        throw std::runtime_error("unexpected cta_tile_q " + std::to_string(plan.cta_tile_q));
    }
    return st;
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

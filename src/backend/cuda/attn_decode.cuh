// FlashInfer's CUDA-core batch decode over paged KV (one query row per entry), one head dim,
// variant and page element type (KV: bf16, or fp8 with the params' v_scale) per instantiation
// (attn_decode_hd*.cu ahead of time, attn_jit_entry.cuh at run time). Planning lives here too: its
// work estimation needs the kernel's occupancy, hence the kernel's template.
#pragma once
#include <flashinfer/attention/decode.cuh>

#include "backend/cuda/attn_common.cuh"

namespace nc::cuda {

// Calls f.template operator()<GROUP_SIZE>() for the GQA group sizes the decode kernel supports.
template <typename F>
cudaError_t dispatch_group_size(int group, F&& f) {
  switch (group) {
    case 1:
      return f.template operator()<1>();
    case 2:
      return f.template operator()<2>();
    case 3:
      return f.template operator()<3>();
    case 4:
      return f.template operator()<4>();
    case 6:
      return f.template operator()<6>();
    case 8:
      return f.template operator()<8>();
    case 16:
      return f.template operator()<16>();
    default:
      throw std::runtime_error("decode: unsupported GQA group size " + std::to_string(group));
  }
}

template <uint32_t HEAD_DIM, bool WINDOW, bool SOFT_CAP, typename KV = bf16>
void decode_plan_impl(const PlanQuery& q, const PlanWorkspace* ws, PlanInfo* out, size_t* fbytes,
                      size_t* ibytes, cudaStream_t stream) {
  using V = Variant<WINDOW, SOFT_CAP>;
  using Params = DecodeParamsT<KV>;
  flashinfer::DecodePlanInfo plan;
  fi_call("decode plan", [&] {
    return dispatch_group_size(q.num_qo_heads / q.num_kv_heads, [&]<uint32_t GROUP>() {
      auto estimate = flashinfer::BatchDecodeWithPagedKVCacheWorkEstimationDispatched<
          GROUP, HEAD_DIM, flashinfer::PosEncodingMode::kNone, V, Params>;
      int32_t* indptr = const_cast<int32_t*>(q.kv_indptr_h);
      if (ws == nullptr) {
        return flashinfer::DecodePlanWorkspaceSize<HEAD_DIM, flashinfer::PosEncodingMode::kNone, V,
                                                   Params>(*fbytes, *ibytes, indptr, q.batch_size,
                                                           q.num_qo_heads, q.page_size,
                                                           q.cuda_graph, stream, estimate);
      }
      return flashinfer::DecodePlan<HEAD_DIM, flashinfer::PosEncodingMode::kNone, V, Params>(
          ws->float_ws, ws->float_bytes, ws->int_ws, ws->int_pinned, ws->int_bytes, plan, indptr,
          q.batch_size, q.num_qo_heads, q.page_size, q.cuda_graph, stream, estimate);
    });
  });
  if (out != nullptr) *out = plan.ToVector();
}

template <uint32_t HEAD_DIM, bool WINDOW, bool SOFT_CAP, typename KV = bf16>
void decode_run_hd(const PlanInfo& plan_vec, const PlanWorkspace& ws, const PagedKV& kv,
                   const AttnIO& io, cudaStream_t stream) {
  flashinfer::DecodePlanInfo plan;
  plan.FromVector(plan_vec);
  DecodeParamsT<KV> p;
  set_common_params(p, kv, io);
  set_work_indices(p, plan, ws);
  bf16* tmp_v = nullptr;
  float* tmp_s = nullptr;
  if (plan.split_kv) {
    tmp_v = at_offset<bf16>(ws.float_ws, plan.v_offset);
    tmp_s = at_offset<float>(ws.float_ws, plan.s_offset);
    if (plan.enable_cuda_graph) {
      p.block_valid_mask = at_offset<bool>(ws.int_ws, plan.block_valid_mask_offset);
    }
  }
  fi_call("batch decode", [&] {
    return flashinfer::BatchDecodeWithPagedKVCacheDispatched<
        HEAD_DIM, flashinfer::PosEncodingMode::kNone, Variant<WINDOW, SOFT_CAP>>(
        p, tmp_v, tmp_s,
        /*enable_pdl=*/false, stream);
  });
}

}  // namespace nc::cuda

namespace nc::cuda {

// The table of one decode configuration (attn_kernels.h); `key` must outlive it (a literal).
template <uint32_t HEAD_DIM, bool WINDOW, bool SOFT_CAP, typename KV = bf16>
const AttnKernelTable* decode_table(const char* key) {
  static const AttnKernelTable table{kAttnTableAbi, key,
                                     &decode_plan_impl<HEAD_DIM, WINDOW, SOFT_CAP, KV>,
                                     &decode_run_hd<HEAD_DIM, WINDOW, SOFT_CAP, KV>, nullptr};
  return &table;
}

}  // namespace nc::cuda

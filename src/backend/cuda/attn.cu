// Attention entry points of kernels.h: planning, dispatch to the per-head-dim instantiations,
// KV append and state merge.
#include <flashinfer/attention/cascade.cuh>
#include <flashinfer/attention/mask.cuh>

#include "backend/cuda/attn_common.cuh"

namespace nc::cuda {

// Defined in attn_prefill.cuh / attn_decode.cuh, instantiated in attn_prefill_*.cu /
// attn_decode_*.cu.
template <uint32_t HEAD_DIM, flashinfer::MaskMode MASK>
void prefill_run_hd(const PlanInfo&, const PlanWorkspace&, const PagedKV&, int32_t*, const AttnIO&,
                    cudaStream_t);
template <uint32_t HEAD_DIM>
void decode_plan_impl(const PlanQuery&, const PlanWorkspace*, PlanInfo*, size_t*, size_t*,
                      cudaStream_t);
template <uint32_t HEAD_DIM>
void decode_run_hd(const PlanInfo&, const PlanWorkspace&, const PagedKV&, const AttnIO&,
                   cudaStream_t);

namespace {

void check_head_dim(int d) {
  if (!head_dim_supported(d)) {
    throw std::runtime_error("attention: head_dim " + std::to_string(d) +
                             " not built (supported: 64, 128)");
  }
}

template <typename Fn>
cudaError_t prefill_plan_impl(const PlanQuery& q, Fn&& fn) {
  return fn(const_cast<int32_t*>(q.qo_indptr_h), const_cast<int32_t*>(q.kv_indptr_h),
            uint32_t(q.total_rows), uint32_t(q.batch_size), uint32_t(q.num_qo_heads),
            uint32_t(q.num_kv_heads), uint32_t(q.head_dim), uint32_t(q.head_dim),
            uint32_t(q.page_size));
}

}  // namespace

void prefill_workspace_size(const PlanQuery& q, size_t* float_bytes, size_t* int_bytes) {
  fi_call("prefill plan", [&] {
    return prefill_plan_impl(
        q, [&](int32_t* qo, int32_t* kv, uint32_t rows, uint32_t b, uint32_t hq, uint32_t hk,
               uint32_t dqk, uint32_t dvo, uint32_t ps) {
          return flashinfer::PrefillPlanWorkspaceSize<int32_t>(
              *float_bytes, *int_bytes, qo, kv, rows, b, hq, hk, dqk, dvo, ps, q.cuda_graph,
              /*sizeof_dtype_o=*/2, /*window_left=*/-1,
              /*fixed_split_size=*/-1, /*disable_split_kv=*/false, /*num_colocated_ctas=*/0,
              /*uniform_q_len=*/0, /*stream=*/nullptr);
        });
  });
}

PlanInfo prefill_plan(const PlanQuery& q, const PlanWorkspace& ws, cudaStream_t stream) {
  flashinfer::PrefillPlanInfo plan;
  fi_call("prefill plan", [&] {
    return prefill_plan_impl(
        q, [&](int32_t* qo, int32_t* kv, uint32_t rows, uint32_t b, uint32_t hq, uint32_t hk,
               uint32_t dqk, uint32_t dvo, uint32_t ps) {
          return flashinfer::PrefillPlan<int32_t>(
              ws.float_ws, ws.float_bytes, ws.int_ws, ws.int_pinned, ws.int_bytes, plan, qo, kv,
              rows, b, hq, hk, dqk, dvo, ps, q.cuda_graph, /*sizeof_dtype_o=*/2,
              /*window_left=*/-1, /*fixed_split_size=*/-1, /*disable_split_kv=*/false,
              /*num_colocated_ctas=*/0, /*uniform_q_len=*/0, stream);
        });
  });
  return plan.ToVector();
}

void prefill_run(const PlanInfo& plan, const PlanWorkspace& ws, const PagedKV& kv,
                 int32_t* qo_indptr, const AttnIO& io, bool causal, cudaStream_t stream) {
  check_head_dim(kv.head_dim);
  using flashinfer::MaskMode;
  if (kv.head_dim == 64) {
    if (causal)
      prefill_run_hd<64, MaskMode::kCausal>(plan, ws, kv, qo_indptr, io, stream);
    else
      prefill_run_hd<64, MaskMode::kNone>(plan, ws, kv, qo_indptr, io, stream);
  } else {
    if (causal)
      prefill_run_hd<128, MaskMode::kCausal>(plan, ws, kv, qo_indptr, io, stream);
    else
      prefill_run_hd<128, MaskMode::kNone>(plan, ws, kv, qo_indptr, io, stream);
  }
}

bool decode_supported(int num_qo_heads, int num_kv_heads, int head_dim) {
  if (!head_dim_supported(head_dim) || num_kv_heads <= 0 || num_qo_heads % num_kv_heads != 0) {
    return false;
  }
  switch (num_qo_heads / num_kv_heads) {
    case 1:
    case 2:
    case 3:
    case 4:
    case 6:
    case 8:
    case 16:
      return true;
    default:
      return false;
  }
}

void decode_workspace_size(const PlanQuery& q, size_t* float_bytes, size_t* int_bytes) {
  check_head_dim(q.head_dim);
  if (q.head_dim == 64)
    decode_plan_impl<64>(q, nullptr, nullptr, float_bytes, int_bytes, nullptr);
  else
    decode_plan_impl<128>(q, nullptr, nullptr, float_bytes, int_bytes, nullptr);
}

PlanInfo decode_plan(const PlanQuery& q, const PlanWorkspace& ws, cudaStream_t stream) {
  check_head_dim(q.head_dim);
  PlanInfo out;
  if (q.head_dim == 64)
    decode_plan_impl<64>(q, &ws, &out, nullptr, nullptr, stream);
  else
    decode_plan_impl<128>(q, &ws, &out, nullptr, nullptr, stream);
  return out;
}

void decode_run(const PlanInfo& plan, const PlanWorkspace& ws, const PagedKV& kv, const AttnIO& io,
                cudaStream_t stream) {
  check_head_dim(kv.head_dim);
  if (kv.head_dim == 64)
    decode_run_hd<64>(plan, ws, kv, io, stream);
  else
    decode_run_hd<128>(plan, ws, kv, io, stream);
}

void append_paged_kv(const PagedKV& kv, const void* k, const void* v, int32_t* batch_indices,
                     int32_t* positions, int nnz, int64_t k_stride, int64_t v_stride,
                     cudaStream_t stream) {
  if (nnz == 0) return;
  fi_call("append paged kv", [&] {
    return flashinfer::AppendPagedKVCache<bf16, int32_t>(
        make_paged_kv(kv), static_cast<bf16*>(const_cast<void*>(k)),
        static_cast<bf16*>(const_cast<void*>(v)), batch_indices, positions, uint32_t(nnz),
        size_t(k_stride), size_t(kv.head_dim), size_t(v_stride), size_t(kv.head_dim), stream);
  });
}

void merge_state_inplace(void* v, float* s, const void* v_other, const float* s_other, int rows,
                         int num_heads, int head_dim, cudaStream_t stream) {
  if (rows == 0) return;
  fi_call("merge state", [&] {
    return flashinfer::MergeStateInPlace<bf16>(
        static_cast<bf16*>(v), s, static_cast<bf16*>(const_cast<void*>(v_other)),
        const_cast<float*>(s_other), uint32_t(rows), uint32_t(num_heads), uint32_t(head_dim),
        /*mask=*/nullptr, stream);
  });
}

}  // namespace nc::cuda

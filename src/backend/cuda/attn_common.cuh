// Shared by the attention translation units: FlashInfer's types for paged attention with bf16
// queries and outputs over bf16 or FP8 E4M3 pages (KV, the page element type).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <flashinfer/attention/default_decode_params.cuh>
#include <flashinfer/attention/default_prefill_params.cuh>
#include <flashinfer/attention/scheduler.cuh>
#include <flashinfer/attention/variants.cuh>
#include <flashinfer/page.cuh>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "backend/cuda/attn_kernels.h"
#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/kernels.h"

namespace nc::cuda {

using bf16 = __nv_bfloat16;
using fp8 = __nv_fp8_e4m3;
// FlashInfer's default softmax attention with the variant flags of an AttnKernelKey (no custom
// mask, no ALiBi): the window and the soft cap read their values from the params at run time.
template <bool WINDOW, bool SOFT_CAP>
using Variant = flashinfer::DefaultAttention<false, WINDOW, SOFT_CAP, false>;
// FP8 pages: FlashInfer's params plus v_scale, which its DefaultAttention multiplies into the
// output (AttentionVariantBase::OutputTransform reads a params' v_scale where it has one), in
// float before the output's bf16 rounding, on every split-KV partial as well (the merge is linear
// in them, and the LSE does not depend on V). bf16 pages keep FlashInfer's own params (no v_scale
// member: the bf16 kernels are the ones they always were).
template <typename Base>
struct WithVScale : Base {
  float v_scale = 1.0f;
};
template <typename KV>
using PrefillParamsT =
    std::conditional_t<std::is_same_v<KV, bf16>,
                       flashinfer::BatchPrefillPagedParams<bf16, bf16, bf16, int32_t>,
                       WithVScale<flashinfer::BatchPrefillPagedParams<bf16, KV, bf16, int32_t>>>;
template <typename KV>
using DecodeParamsT =
    std::conditional_t<std::is_same_v<KV, bf16>,
                       flashinfer::BatchDecodeParams<bf16, bf16, bf16, int32_t>,
                       WithVScale<flashinfer::BatchDecodeParams<bf16, KV, bf16, int32_t>>>;
using PrefillParams = PrefillParamsT<bf16>;
using DecodeParams = DecodeParamsT<bf16>;

// Our page tensor holds K and V of a page next to each other ([P, 2, ...]), so the page stride
// is twice the K (or V) block and V starts one block after K (in elements of KV: bytes for fp8).
template <typename KV = bf16>
flashinfer::paged_kv_t<KV, int32_t> make_paged_kv(const PagedKV& kv) {
  const int64_t hd = kv.head_dim;
  const int64_t half = int64_t(kv.page_size) * kv.num_kv_heads * hd;
  // Strides of the [page, dim1, dim2] view in FlashInfer's order: NHD (n, h), HND (h, n).
  const int64_t strides[3] = {2 * half, kv.hnd ? kv.page_size * hd : kv.num_kv_heads * hd, hd};
  KV* k = static_cast<KV*>(kv.pages);
  return flashinfer::paged_kv_t<KV, int32_t>(
      kv.num_kv_heads, kv.page_size, kv.head_dim, kv.batch_size,
      kv.hnd ? flashinfer::QKVLayout::kHND : flashinfer::QKVLayout::kNHD, k, k + half, strides,
      kv.indices, kv.indptr, kv.last_page_len);
}

template <typename T>
T* at_offset(void* base, int64_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

// The fields FlashInfer's decode and prefill parameter structs share: inputs and outputs, and
// the variant's values (no rope inside the kernel). A variant whose flag is off ignores its value.
template <typename Params>
void set_common_params(Params& p, const PagedKV& kv, const AttnIO& io) {
  p.q = static_cast<bf16*>(const_cast<void*>(io.q));
  p.paged_kv = make_paged_kv<typename Params::DTypeKV>(kv);
  p.o = static_cast<bf16*>(io.o);
  p.lse = io.lse;
  p.num_qo_heads = io.num_qo_heads;
  p.q_stride_n = io.num_qo_heads * kv.head_dim;
  p.q_stride_h = kv.head_dim;
  p.window_left = io.window_left;
  p.logits_soft_cap = io.logits_soft_cap;
  p.sm_scale = io.sm_scale;
  p.rope_rcp_scale = 1.0f;
  p.rope_rcp_theta = 1.0f / 1e4f;
  if constexpr (requires { p.v_scale; }) p.v_scale = io.v_scale;
}

// The work-partition arrays both plans lay out in the int workspace.
template <typename Params, typename Plan>
void set_work_indices(Params& p, const Plan& plan, const PlanWorkspace& ws) {
  p.request_indices = at_offset<int32_t>(ws.int_ws, plan.request_indices_offset);
  p.kv_tile_indices = at_offset<int32_t>(ws.int_ws, plan.kv_tile_indices_offset);
  p.o_indptr = at_offset<int32_t>(ws.int_ws, plan.o_indptr_offset);
  p.kv_chunk_size_ptr = at_offset<int32_t>(ws.int_ws, plan.kv_chunk_size_ptr_offset);
  p.padded_batch_size = plan.padded_batch_size;
}

// The split-KV scratch of a prefill launch (null: the plan does not split).
struct PrefillScratch {
  bf16* v = nullptr;
  float* s = nullptr;
};

// FlashInfer's prefill plan in a prefill launch's params, paged or ragged: the work partition,
// the query tiles, the split-KV merge arrays and scratch where it splits, and a graph plan's
// valid-block mask and row count.
template <typename Params>
PrefillScratch set_prefill_plan(Params& p, const flashinfer::PrefillPlanInfo& plan,
                                const PlanWorkspace& ws) {
  set_work_indices(p, plan, ws);
  p.qo_tile_indices = at_offset<int32_t>(ws.int_ws, plan.qo_tile_indices_offset);
  PrefillScratch scratch;
  if (plan.split_kv) {
    p.merge_indptr = at_offset<int32_t>(ws.int_ws, plan.merge_indptr_offset);
    scratch.v = at_offset<bf16>(ws.float_ws, plan.v_offset);
    scratch.s = at_offset<float>(ws.float_ws, plan.s_offset);
  }
  p.max_total_num_rows = plan.total_num_rows;
  if (plan.enable_cuda_graph) {
    p.block_valid_mask = at_offset<bool>(ws.int_ws, plan.block_valid_mask_offset);
    p.total_num_rows = at_offset<uint32_t>(ws.int_ws, plan.total_num_rows_offset);
  }
  return scratch;
}

// launch(std::integral_constant<uint32_t, T>) for the query tile T the plan chose (16, 64 or
// 128: FA2's prefill tiles); std::runtime_error for any other.
template <typename Launch>
cudaError_t with_cta_tile_q(uint32_t cta_tile_q, Launch&& launch) {
  switch (cta_tile_q) {
    case 16:
      return launch(std::integral_constant<uint32_t, 16>{});
    case 64:
      return launch(std::integral_constant<uint32_t, 64>{});
    case 128:
      return launch(std::integral_constant<uint32_t, 128>{});
    default:
      throw std::runtime_error("unexpected cta_tile_q " + std::to_string(cta_tile_q));
  }
}

}  // namespace nc::cuda

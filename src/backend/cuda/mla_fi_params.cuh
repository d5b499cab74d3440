// FlashInfer's MLA params from an MlaFiRunArgs (mla_kernels.h), shared by mla_fi.cu (FA2) and
// mla_fi_sm90.cu (Hopper): both kernels read the same params and the same MLAPlan schedule.
//
// Our pages hold one row [c_kv (512) | k_pe (64)] per slot, so FlashInfer's two caches are views
// of the same pages: ckv at the row's start, kpe 512 values in, both with the row (576) as the
// token stride and page_size rows as the page stride. The query is laid out the same way
// ([rows, heads, 576]: absorbed q_nope | q_pe), the output is [rows, heads, 512]. Every offset is
// a multiple of 16 bytes (512 * 2 and 576 * 2), as FlashInfer's 128-bit copies need.
#pragma once
#include <cuda_bf16.h>

#include <flashinfer/allocator.h>
#include <flashinfer/attention/mla_params.cuh>
#include <flashinfer/attention/scheduler.cuh>
#include <flashinfer/fastdiv.cuh>

#include "backend/cuda/mla_kernels.h"

namespace nc::cuda {

using MlaFiParams = flashinfer::MLAParams<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16, int32_t>;

inline MlaFiParams mla_fi_params(const MlaFiRunArgs& a) {
  using flashinfer::GetPtrFromBaseOffset;
  using bf16 = __nv_bfloat16;
  constexpr uint32_t Dl = kMlaFiLatentDim, D = kMlaFiLatentDim + kMlaFiRopeDim;
  flashinfer::MLAPlanInfo info;
  info.FromVector(*a.info);
  auto ints = [&](int64_t off) { return GetPtrFromBaseOffset<int32_t>(a.int_dev, off); };
  MlaFiParams p;
  auto* q = static_cast<bf16*>(const_cast<void*>(a.q));
  auto* pages = static_cast<bf16*>(const_cast<void*>(a.pages));
  p.q_nope = q;
  p.q_pe = q + Dl;
  p.ckv = pages;
  p.kpe = pages + Dl;
  p.partial_o = GetPtrFromBaseOffset<bf16>(a.float_dev, info.partial_o_offset);
  p.partial_lse = GetPtrFromBaseOffset<float>(a.float_dev, info.partial_lse_offset);
  p.final_o = static_cast<bf16*>(a.out);
  p.final_lse = a.lse;
  p.q_indptr = ints(info.q_indptr_offset);
  p.kv_indptr = ints(info.kv_indptr_offset);
  p.partial_indptr = ints(info.partial_indptr_offset);
  p.merge_packed_offset_start = ints(info.merge_packed_offset_start_offset);
  p.merge_packed_offset_end = ints(info.merge_packed_offset_end_offset);
  p.merge_partial_packed_offset_start = ints(info.merge_partial_packed_offset_start_offset);
  p.merge_partial_packed_offset_end = ints(info.merge_partial_packed_offset_end_offset);
  p.merge_partial_stride = ints(info.merge_partial_stride_offset);
  p.kv_indices = const_cast<int32_t*>(a.kv_indices);
  p.q_len = ints(info.q_len_offset);
  p.kv_len = ints(info.kv_len_offset);
  p.q_start = ints(info.q_start_offset);
  p.kv_start = ints(info.kv_start_offset);
  p.kv_end = ints(info.kv_end_offset);
  p.work_indptr = ints(info.work_indptr_offset);
  p.block_size = flashinfer::uint_fastdiv(uint32_t(a.page_size));
  p.num_heads = flashinfer::uint_fastdiv(uint32_t(a.heads));
  p.q_nope_stride_n = p.q_pe_stride_n = uint32_t(a.heads) * D;
  p.q_nope_stride_h = p.q_pe_stride_h = D;
  p.ckv_stride_page = p.kpe_stride_page = uint32_t(a.page_size) * D;
  p.ckv_stride_n = p.kpe_stride_n = D;
  p.o_stride_n = uint32_t(a.heads) * Dl;
  p.o_stride_h = Dl;
  p.sm_scale = a.sm_scale;
  p.return_lse_base_on_e = false;  // base 2, as our merges take it
  return p;
}

}  // namespace nc::cuda

// The body of a run-time compiled attention object (and of a configuration compiled ahead through
// NC_AOT_ATTENTION): instantiates one configuration and exports its table. The including file
// defines the configuration first:
//   NC_ATTN_KIND      0 decode, 1 prefill causal, 2 prefill without mask, 3 ragged causal
//                     (AttnKind)
//   NC_ATTN_HEAD_DIM  the head dim (ragged: of queries and keys)
//   NC_ATTN_HEAD_DIM_VO  ragged: the values' head dim
//   NC_ATTN_WINDOW    0/1, NC_ATTN_SOFT_CAP 0/1 (the variant flags)
//   NC_ATTN_KV_FP8    0/1: FP8 E4M3 pages (default 0: bf16)
//   NC_ATTN_KEY       the string the table carries (the JIT's full cache key)
//   NC_ATTN_ENTRY     the exported function's name (kAttnEntrySymbol for a JIT object)
#pragma once
#ifndef NC_ATTN_KV_FP8
#define NC_ATTN_KV_FP8 0
#endif
#if NC_ATTN_KIND == 0
#include "backend/cuda/attn_decode.cuh"
#elif NC_ATTN_KIND == 3
#include "backend/cuda/attn_ragged.cuh"
#else
#include "backend/cuda/attn_prefill.cuh"
#endif

extern "C" __attribute__((visibility("default"))) const nc::cuda::AttnKernelTable* NC_ATTN_ENTRY() {
#if NC_ATTN_KV_FP8
  using KV = nc::cuda::fp8;
#else
  using KV = nc::cuda::bf16;
#endif
#if NC_ATTN_KIND == 0
  return nc::cuda::decode_table<NC_ATTN_HEAD_DIM, NC_ATTN_WINDOW, NC_ATTN_SOFT_CAP, KV>(
      NC_ATTN_KEY);
#elif NC_ATTN_KIND == 3
  static_assert(!NC_ATTN_KV_FP8, "ragged attention runs over bf16 K/V only");
  return nc::cuda::ragged_table<NC_ATTN_HEAD_DIM, NC_ATTN_HEAD_DIM_VO, NC_ATTN_WINDOW,
                                NC_ATTN_SOFT_CAP>(NC_ATTN_KEY);
#elif NC_ATTN_KIND == 1
  return nc::cuda::prefill_table<NC_ATTN_HEAD_DIM, flashinfer::MaskMode::kCausal, NC_ATTN_WINDOW,
                                 NC_ATTN_SOFT_CAP, KV>(NC_ATTN_KEY);
#else
  return nc::cuda::prefill_table<NC_ATTN_HEAD_DIM, flashinfer::MaskMode::kNone, NC_ATTN_WINDOW,
                                 NC_ATTN_SOFT_CAP, KV>(NC_ATTN_KEY);
#endif
}

// The body of a run-time compiled attention object (and of a configuration compiled ahead through
// NC_AOT_ATTENTION): instantiates one configuration and exports its table. The including file
// defines the configuration first:
//   NC_ATTN_KIND      0 decode, 1 prefill causal, 2 prefill without mask (AttnKind)
//   NC_ATTN_HEAD_DIM  the head dim
//   NC_ATTN_WINDOW    0/1, NC_ATTN_SOFT_CAP 0/1 (the variant flags)
//   NC_ATTN_KEY       the string the table carries (the JIT's full cache key)
//   NC_ATTN_ENTRY     the exported function's name (kAttnEntrySymbol for a JIT object)
#pragma once
#if NC_ATTN_KIND == 0
#include "backend/cuda/attn_decode.cuh"
#else
#include "backend/cuda/attn_prefill.cuh"
#endif

extern "C" __attribute__((visibility("default"))) const nc::cuda::AttnKernelTable* NC_ATTN_ENTRY() {
#if NC_ATTN_KIND == 0
  return nc::cuda::decode_table<NC_ATTN_HEAD_DIM, NC_ATTN_WINDOW, NC_ATTN_SOFT_CAP>(NC_ATTN_KEY);
#elif NC_ATTN_KIND == 1
  return nc::cuda::prefill_table<NC_ATTN_HEAD_DIM, flashinfer::MaskMode::kCausal, NC_ATTN_WINDOW,
                                 NC_ATTN_SOFT_CAP>(NC_ATTN_KEY);
#else
  return nc::cuda::prefill_table<NC_ATTN_HEAD_DIM, flashinfer::MaskMode::kNone, NC_ATTN_WINDOW,
                                 NC_ATTN_SOFT_CAP>(NC_ATTN_KEY);
#endif
}

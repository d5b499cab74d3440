// Ahead of time: plain bf16 prefill (none), head_dim 64 (attn.cu's aot_attn_table).
#include "backend/cuda/attn_prefill.cuh"

namespace nc::cuda {
const AttnKernelTable* aot_prefill_hd64_none() {
  return prefill_table<64, flashinfer::MaskMode::kNone, false, false>(
      "prefill_none_hd64_w0_sc0_bf16");
}
}  // namespace nc::cuda

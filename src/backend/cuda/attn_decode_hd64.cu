// Ahead of time: plain bf16 decode, head_dim 64 (attn.cu's aot_attn_table).
#include "backend/cuda/attn_decode.cuh"

namespace nc::cuda {
const AttnKernelTable* aot_decode_hd64() {
  return decode_table<64, false, false>("decode_hd64_w0_sc0_bf16");
}
}  // namespace nc::cuda

// Ahead of time: plain bf16 decode, head_dim 128 (attn.cu's aot_attn_table).
#include "backend/cuda/attn_decode.cuh"

namespace nc::cuda {
const AttnKernelTable* aot_decode_hd128() {
  return decode_table<128, false, false>("decode_hd128_w0_sc0_bf16");
}
}  // namespace nc::cuda

#include "backend/cuda/attn_prefill.cuh"

namespace nc::cuda {
NC_INSTANTIATE_PREFILL(64, flashinfer::MaskMode::kCausal)
}  // namespace nc::cuda

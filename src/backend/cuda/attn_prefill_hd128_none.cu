#include "backend/cuda/attn_prefill.cuh"

namespace nc::cuda {
NC_INSTANTIATE_PREFILL(128, flashinfer::MaskMode::kNone)
}  // namespace nc::cuda

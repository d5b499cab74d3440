#include "backend/cuda/attn_decode.cuh"

namespace nc::cuda {
NC_INSTANTIATE_DECODE(64)
}  // namespace nc::cuda

#include "backend/cuda/attn_decode.cuh"

namespace nc::cuda {
NC_INSTANTIATE_DECODE(128)
}  // namespace nc::cuda

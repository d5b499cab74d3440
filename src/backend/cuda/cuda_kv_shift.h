// The CUDA backend's Backend::shift_key_positions (contract in backend/backend.h): the checks on
// the host, then the kernel of kv_shift.cu on the backend's stream. The shifts live on the
// device, so their page ids and positions are checked where the model builds them.
#pragma once
#include "backend/cuda/cuda_context.h"
#include "kv/paged_kv.h"

namespace nc::cuda_host {

void cuda_shift_key_positions(const Context& ctx, Tensor kv_pages, const KVCacheShape& kv,
                              const Tensor& shifts, const Tensor& inv_freq);

}  // namespace nc::cuda_host

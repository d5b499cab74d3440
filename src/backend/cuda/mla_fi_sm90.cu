// FlashInfer's Hopper MLA kernel (BatchMLAPageAttentionHopper: wgmma, a producer warpgroup that
// streams the pages) at DeepSeek's dims (mla_kernels.h); it runs MLAPlan's schedule, as the FA2
// kernel of mla_fi.cu does. Built with CUTLASS's headers (cmake/cuda.cmake).
#include <cuda_bf16.h>

// FlashInfer's MLA headers declare unused constants (177) and write `.template` before a
// non-template member (946); both are theirs, and the diagnostics stay off for this file only.
#pragma nv_diag_suppress 177
#pragma nv_diag_suppress 946
#include <flashinfer/attention/mla_hopper.cuh>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/mla_fi_params.cuh"
#include "backend/cuda/mla_kernels.h"

namespace nc::cuda {

void mla_fi_run_sm90(const MlaFiRunArgs& a, cudaStream_t stream) {
  flashinfer::MLAPlanInfo info;
  info.FromVector(*a.info);
  const MlaFiParams p = mla_fi_params(a);
  fi_call("mla attention (FlashInfer Hopper)", [&] {
    using flashinfer::MaskMode;
    constexpr uint32_t Dl = kMlaFiLatentDim, Dr = kMlaFiRopeDim;
    const auto x = uint32_t(info.num_blks_x), y = uint32_t(info.num_blks_y);
    return a.causal ? flashinfer::mla::BatchMLAPageAttentionHopper<MaskMode::kCausal, Dl, Dr>(
                          p, x, y, stream)
                    : flashinfer::mla::BatchMLAPageAttentionHopper<MaskMode::kNone, Dl, Dr>(p, x, y,
                                                                                            stream);
  });
}

}  // namespace nc::cuda

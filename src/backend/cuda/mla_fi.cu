// FlashInfer's MLA plan and its FA2-style kernel (BatchMLAPagedAttention) at DeepSeek's dims
// (mla_kernels.h). The Hopper kernel is mla_fi_sm90.cu (it needs CUTLASS's headers).
#include <cuda_bf16.h>

// FlashInfer's MLA headers declare unused constants (177) and write `.template` before a
// non-template member (946); both are theirs, and the diagnostics stay off for this file only.
#pragma nv_diag_suppress 177
#pragma nv_diag_suppress 946
#include <flashinfer/attention/mla.cuh>
#include <flashinfer/attention/scheduler.cuh>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/mla_fi_params.cuh"
#include "backend/cuda/mla_kernels.h"

namespace nc::cuda {
namespace {

// MLAPlan reserves this many work items per array (its max_total_num_works).
constexpr size_t kMaxWorks = 16384;

size_t align16(size_t n) {
  return (n + 15) / 16 * 16;
}

}  // namespace

// MLAPlan's int arrays: nine of kMaxWorks entries and five of one entry per SM, each 16-byte
// aligned; rounded up with room to spare.
size_t mla_fi_int_bytes() {
  const size_t per_sm = align16(size_t(device_sm_count()) * sizeof(int32_t));
  return align16(9 * kMaxWorks * sizeof(int32_t) + 5 * per_sm + 4096);
}

// MLAPlan's partial outputs: 2 * clusters * cluster_tile_q rows of 512 bf16 and their LSE, where
// clusters * cluster_tile_q is SMs * 64 for either cluster size.
size_t mla_fi_float_bytes() {
  const size_t rows = 2 * size_t(device_sm_count()) * 64;
  return align16(rows * kMlaFiLatentDim * 2) + align16(rows * sizeof(float)) + 256;
}

bool mla_fi_sm90_available() {
  return device_is_sm90();
}

std::vector<int64_t> mla_fi_plan(const MlaFiPlanArgs& a, size_t* staged_bytes) {
  flashinfer::MLAPlanInfo info;
  fi_call("mla plan (FlashInfer)", [&] {
    return flashinfer::MLAPlan<int32_t>(
        a.float_dev, a.float_bytes, a.int_dev, a.int_host, mla_fi_int_bytes(), info, *staged_bytes,
        const_cast<int32_t*>(a.qo_indptr_h), const_cast<int32_t*>(a.kv_indptr_h),
        const_cast<int32_t*>(a.kv_len_h), uint32_t(a.batch_size), uint32_t(a.num_heads),
        uint32_t(kMlaFiLatentDim), a.causal, /*stream=*/nullptr);
  });
  return info.ToVector();
}

void mla_fi_run_fa2(const MlaFiRunArgs& a, cudaStream_t stream) {
  flashinfer::MLAPlanInfo info;
  info.FromVector(*a.info);
  const MlaFiParams p = mla_fi_params(a);
  fi_call("mla attention (FlashInfer FA2)", [&] {
    using flashinfer::MaskMode;
    constexpr uint32_t Dl = kMlaFiLatentDim, Dr = kMlaFiRopeDim;
    return a.causal ? flashinfer::mla::BatchMLAPagedAttention<MaskMode::kCausal, Dl, Dr>(
                          p, uint32_t(info.num_blks_x), uint32_t(info.num_blks_y), stream)
                    : flashinfer::mla::BatchMLAPagedAttention<MaskMode::kNone, Dl, Dr>(
                          p, uint32_t(info.num_blks_x), uint32_t(info.num_blks_y), stream);
  });
}

}  // namespace nc::cuda

// FlashInfer's Hopper batch prefill (sm90: wgmma, TMA for Q, cp.async page gathers for K/V) over
// paged KV, bf16, non-causal: the shared (prefix) levels of cascade steps. Two variants, both
// compiled ahead: FlashInfer's StandardAttention and its LogitsSoftCap (chosen per run by
// AttnIO::logits_soft_cap > 0). No sliding-window instantiation: shared levels are never
// windowed (the window applies to the own level, which is causal and runs FA2 or decode).
//
// This file runs a plan; attn_prefill_sm90_plan.cc makes it from the schedule of
// backend/sm90_schedule.h (host code, CPU-tested), which may split long KV into page-aligned
// chunks. A split run gathers each entry's query rows once per chunk, runs the kernel over the
// replicas (each chunk writes its own partial output and base-2 LSE), and merges the partial
// states per row with the small kernel below.
//
// This translation unit includes only the hopper headers: FlashInfer's FA2 parameter structs and
// variants (attn_common.cuh) share names with the hopper ones.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <flashinfer/attention/hopper/default_params.cuh>
#include <flashinfer/attention/hopper/prefill_sm90.cuh>
#include <flashinfer/attention/hopper/variants.cuh>
#include <flashinfer/cutlass_utils.cuh>
#include <type_traits>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/kernels.h"
#include "backend/sm90_schedule.h"

namespace nc::cuda {
namespace {

using CBF16 = cutlass::bfloat16_t;
using Sm90Params = flashinfer::BatchPrefillPagedParams<CBF16, CBF16, CBF16, int32_t>;

// Merges the partial states of each (row, head): out row t combines partial rows
// first[t] + c * stride[t], c < count[t], weighted by 2^(lse - max). One group of D/8 threads per
// (row, head), 8 bf16 per thread.
template <int D>
__global__ void merge_partials_kernel(const __nv_bfloat16* __restrict__ part_o,
                                      const float* __restrict__ part_lse,
                                      const int32_t* __restrict__ first,
                                      const int32_t* __restrict__ count,
                                      const int32_t* __restrict__ stride, __nv_bfloat16* out,
                                      float* out_lse, int rows, int heads) {
  constexpr int kThreads = D / 8;
  const int64_t pair = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kThreads;
  const int lane = threadIdx.x % kThreads;
  if (pair >= int64_t(rows) * heads) return;
  const int t = int(pair / heads), h = int(pair % heads);
  const int n = count[t], f = first[t], st = stride[t];
  float m = -INFINITY;
  for (int c = 0; c < n; ++c) m = fmaxf(m, part_lse[int64_t(f + c * st) * heads + h]);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  float sum = 0.0f;
  if (m != -INFINITY) {
    for (int c = 0; c < n; ++c) {
      const int64_t r = f + int64_t(c) * st;
      const float w = exp2f(part_lse[r * heads + h] - m);
      sum += w;
      const uint4 raw = *reinterpret_cast<const uint4*>(part_o + (r * heads + h) * D + lane * 8);
      const __nv_bfloat16* v = reinterpret_cast<const __nv_bfloat16*>(&raw);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] += w * __bfloat162float(v[i]);
    }
  }
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  uint4 res;
  __nv_bfloat16* o = reinterpret_cast<__nv_bfloat16*>(&res);
#pragma unroll
  for (int i = 0; i < 8; ++i) o[i] = __float2bfloat16(acc[i] * inv);
  *reinterpret_cast<uint4*>(out + (int64_t(t) * heads + h) * D + lane * 8) = res;
  if (out_lse != nullptr && lane == 0)
    out_lse[int64_t(t) * heads + h] = sum > 0.0f ? m + log2f(sum) : -INFINITY;
}

// The variant reads its values from p.additional_params (sm_scale, logits_soft_cap).
template <uint32_t HEAD_DIM, bool SOFT_CAP>
cudaError_t launch_sm90(Sm90Params& p, cudaStream_t stream) {
  using Variant =
      std::conditional_t<SOFT_CAP, flashinfer::LogitsSoftCap, flashinfer::StandardAttention>;
  return flashinfer::BatchPrefillWithPagedKVCacheDispatched<
      HEAD_DIM, HEAD_DIM, flashinfer::MaskMode::kNone, /*LEFT_SLIDING_WINDOW=*/false,
      /*SAME_SCHEDULE_FOR_ALL_HEADS=*/false, Variant, Sm90Params>(p, /*enable_pdl=*/false, stream);
}

cudaError_t launch_sm90_variant(Sm90Params& p, int head_dim, bool soft_cap, cudaStream_t stream) {
  if (head_dim == 64)
    return soft_cap ? launch_sm90<64, true>(p, stream) : launch_sm90<64, false>(p, stream);
  return soft_cap ? launch_sm90<128, true>(p, stream) : launch_sm90<128, false>(p, stream);
}

}  // namespace

bool device_is_sm90() {
  static const bool yes = [] {
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
      return false;
    return major == 9 && minor == 0;
  }();
  return yes;
}

int device_sm_count() {
  int dev = 0, n = 0;
  check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev), "SM count");
  return n;
}

bool sm90_prefill_available(int num_qo_heads, int num_kv_heads, int head_dim) {
  if (head_dim != 128 && head_dim != 64) return false;
  if (num_kv_heads <= 0 || num_qo_heads % num_kv_heads != 0) return false;
  return device_is_sm90();
}

void sm90_prefill_run(const PlanInfo& info, const PlanWorkspace& ws, const PagedKV& kv,
                      const AttnIO& io, cudaStream_t stream) {
  if (info.size() != kSm90NumFields) throw std::runtime_error("sm90 prefill run: not an sm90 plan");
  const int D = kv.head_dim, Hq = io.num_qo_heads, Hk = kv.num_kv_heads;
  if (info[kSm90HeadDim] != D || info[kSm90Heads] != Hq)
    throw std::runtime_error("sm90 prefill run: plan was made for other heads");
  if (info[kSm90Ctas] != device_sm_count())
    throw std::runtime_error("sm90 prefill run: plan was made for another SM count");
  const bool split = info[kSm90Split] != 0;
  const int64_t rows = info[kSm90Rows], rep_rows = info[kSm90RepRows];
  auto int_arr = [&](Sm90PlanField f) {
    return reinterpret_cast<int32_t*>(static_cast<char*>(ws.int_ws) + info[f]);
  };
  const Sm90SplitBuffers sb = sm90_split_buffers(rep_rows, Hq, D);
  char* fws = static_cast<char*>(ws.float_ws);
  if (split) {
    gather_rows(io.q, int_arr(kSm90OffGather), fws + sb.q_off, rep_rows, rows, int64_t(Hq) * D * 2,
                stream);
  }

  Sm90Params p{};
  p.q_ptr = split ? reinterpret_cast<CBF16*>(fws + sb.q_off)
                  : static_cast<CBF16*>(const_cast<void*>(io.q));
  const int64_t half = int64_t(kv.page_size) * Hk * D;
  p.k_ptr = static_cast<CBF16*>(kv.pages);
  p.v_ptr = p.k_ptr + half;
  p.o_ptr = split ? reinterpret_cast<CBF16*>(fws + sb.o_off) : static_cast<CBF16*>(io.o);
  p.lse_ptr = split ? reinterpret_cast<float*>(fws + sb.lse_off) : io.lse;
  p.qo_tile_indices = int_arr(kSm90OffQoTile);
  p.qo_indptr = int_arr(kSm90OffQoIndptr);
  p.kv_indptr = int_arr(kSm90OffKvIndptr);
  p.kv_indices = kv.indices;
  p.qo_lens = int_arr(kSm90OffQoLen);
  p.kv_lens = int_arr(kSm90OffKvLen);
  p.head_indices = int_arr(kSm90OffHead);
  p.work_indptr = int_arr(kSm90OffWorkIndptr);
  p.batch_indices = int_arr(kSm90OffBatch);
  p.additional_params.sm_scale = io.sm_scale;
  p.additional_params.logits_soft_cap = io.logits_soft_cap;
  p.q_stride_n = p.o_stride_n = int64_t(Hq) * D;
  p.q_stride_h = p.o_stride_h = D;
  // Our page: [K | V], each [page_size, Hk, D] (NHD) or [Hk, page_size, D] (HND). The kernel
  // walks K and V with the same strides.
  p.k_stride_n = p.v_stride_n = kv.hnd ? D : int64_t(Hk) * D;
  p.k_stride_h = p.v_stride_h = kv.hnd ? int64_t(kv.page_size) * D : D;
  p.k_page_stride = p.v_page_stride = 2 * half;
  p.nnz_qo = split ? rep_rows : rows;
  p.num_qo_heads = Hq;
  p.num_kv_heads = Hk;
  p.group_size = Hq / Hk;
  p.page_size = kv.page_size;
  p.window_left = -1;
  p.causal = false;
  fi_call("sm90 batch prefill",
          [&] { return launch_sm90_variant(p, D, io.logits_soft_cap > 0.0f, stream); });

  if (split) {
    const int64_t pairs = rows * Hq;
    const int threads = 256;
    const int per_block = threads / (D / 8);
    const unsigned blocks = unsigned((pairs + per_block - 1) / per_block);
    const auto* po = reinterpret_cast<const __nv_bfloat16*>(fws + sb.o_off);
    const auto* pl = reinterpret_cast<const float*>(fws + sb.lse_off);
    auto* out = static_cast<__nv_bfloat16*>(io.o);
    if (D == 64)
      merge_partials_kernel<64>
          <<<blocks, threads, 0, stream>>>(po, pl, int_arr(kSm90OffFirst), int_arr(kSm90OffCount),
                                           int_arr(kSm90OffStride), out, io.lse, int(rows), Hq);
    else
      merge_partials_kernel<128>
          <<<blocks, threads, 0, stream>>>(po, pl, int_arr(kSm90OffFirst), int_arr(kSm90OffCount),
                                           int_arr(kSm90OffStride), out, io.lse, int(rows), Hq);
    check_launch("sm90 prefill merge");
  }
}

}  // namespace nc::cuda

// Sparse decode attention's kernels (sparse_kernels.h): page bounds and page scores (the
// selection is sparse_select.cu).
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/sparse_kernels.h"

namespace nc::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;

// ---- update_page_bounds: one block per listed page, two elements of [Hk, D] per thread ----

// Features d and d + 1 (d even) of page element offset `off` as float: bf16, or an fp8 code pair
// decoded exactly and scaled by k_scale (the CPU's bounds of an fp8 cache: cpu_sparse.cc).
__device__ inline float2 key_pair(const PageBoundsArgs& a, int64_t off) {
  if (a.fp8) {
    const float2 f = static_cast<float2>(
        *reinterpret_cast<const __nv_fp8x2_e4m3*>(static_cast<const uint8_t*>(a.pages) + off));
    return make_float2(f.x * a.k_scale, f.y * a.k_scale);
  }
  return __bfloat1622float2(
      *reinterpret_cast<const __nv_bfloat162*>(static_cast<const __nv_bfloat16*>(a.pages) + off));
}

__global__ void page_bounds_kernel(PageBoundsArgs a) {
  const int pid = a.page_slots[2 * blockIdx.x];
  if (pid < 0 || pid >= a.num_pages) return;
  const int valid = min(max(a.page_slots[2 * blockIdx.x + 1], 0), a.page_size);
  const int hd = a.num_kv_heads * a.head_dim;
  const int64_t page = int64_t(pid) * 2 * a.page_size * hd;  // element offset of the page
  float* lo = a.bounds + int64_t(pid) * 2 * hd;
  float* hi = lo + hd;
  for (int x = 2 * threadIdx.x; x < hd; x += 2 * blockDim.x) {
    const int h = x / a.head_dim, d = x % a.head_dim;
    float2 mn = make_float2(INFINITY, INFINITY), mx = make_float2(-INFINITY, -INFINITY);
#pragma unroll 4
    for (int s = 0; s < valid; ++s) {
      const int64_t off = a.hnd ? (int64_t(h) * a.page_size + s) * a.head_dim + d
                                : (int64_t(s) * a.num_kv_heads + h) * a.head_dim + d;
      const float2 f = key_pair(a, page + off);
      mn = make_float2(fminf(mn.x, f.x), fminf(mn.y, f.y));
      mx = make_float2(fmaxf(mx.x, f.x), fmaxf(mx.y, f.y));
    }
    lo[x] = mn.x;
    lo[x + 1] = mn.y;
    hi[x] = mx.x;
    hi[x + 1] = mx.y;
  }
}

// ---- sparse_page_scores ----
// A (page, KV head) row is read by 8 lanes; lane `sub` takes the float4 chunks sub, sub + 8, ...
// of min and of max, so each load instruction of the 8 lanes reads 128 contiguous bytes (whole
// sectors) and each shared-memory read of q is conflict-free. A warp reads 4 rows at once and
// sums each over its 8 lanes (3 shuffles per query head). Block (x, e): up to kScoreRows rows of
// entry e's candidates from x * kScoreRows / Hk on; q's row in shared memory as float, then the
// rows' group maxima, then the maximum over heads per page.
constexpr int kScoreThreads = 256;
constexpr int kLanesPerRow = 8;
constexpr int kScoreRows = 256;  // smaller blocks: less of a last partial wave at small batches

int score_pages_per_block(int num_kv_heads) {
  return num_kv_heads >= kScoreRows ? 1 : kScoreRows / num_kv_heads;
}

__device__ inline float bound_dot(float4 q, float4 lo, float4 hi) {
  return fmaxf(q.x * lo.x, q.x * hi.x) + fmaxf(q.y * lo.y, q.y * hi.y) +
         fmaxf(q.z * lo.z, q.z * hi.z) + fmaxf(q.w * lo.w, q.w * hi.w);
}

template <int D>
__global__ void __launch_bounds__(kScoreThreads) page_scores_kernel(SparseSelectArgs a, int ppb) {
  constexpr int C = D / (4 * kLanesPerRow);  // float4 chunks per lane and row
  extern __shared__ float4 smem4[];
  pdl_wait();  // q and the bounds come from the kernels before (PDL, pdl.cuh)
  const int* e = a.entries + blockIdx.y * kSparseEntryFields;
  const int c0 = e[kSeCand0], m = e[kSeCand1] - c0, keep = e[kSeKeep];
  const int first = blockIdx.x * ppb;
  if (keep <= 0 || keep >= m || first >= m) return;  // nothing to rank (block-uniform)
  const int hk = a.num_kv_heads, group = a.num_qo_heads / hk;
  const int count = min(ppb, m - first), rows = count * hk;
  float4* sq = smem4;  // [Hq * D / 4]
  float* row_best = reinterpret_cast<float*>(smem4 + a.num_qo_heads * D / 4);
  const auto* qrow =
      reinterpret_cast<const __nv_bfloat162*>(a.q) + int64_t(e[kSeQRow]) * a.num_qo_heads * D / 2;
  for (int i = threadIdx.x; i < a.num_qo_heads * D / 4; i += blockDim.x) {
    const float2 x = __bfloat1622float2(qrow[2 * i]), y = __bfloat1622float2(qrow[2 * i + 1]);
    sq[i] = make_float4(x.x, x.y, y.x, y.y);
  }
  __syncthreads();
  const int sub = threadIdx.x % kLanesPerRow, slot = threadIdx.x / kLanesPerRow;
  const int* pages = a.full_indices + e[kSeSrcOff] + c0 + first;
  for (int r0 = 0; r0 < rows; r0 += kScoreThreads / kLanesPerRow) {
    const int r = r0 + slot;
    const bool valid = r < rows;
    const int h = valid ? r % hk : 0;
    float4 lo[C], hi[C];
    if (valid) {
      const float4* base =
          reinterpret_cast<const float4*>(a.bounds + (int64_t(pages[r / hk]) * 2 * hk + h) * D);
#pragma unroll
      for (int j = 0; j < C; ++j) {
        lo[j] = __ldg(base + j * kLanesPerRow + sub);
        hi[j] = __ldg(base + hk * D / 4 + j * kLanesPerRow + sub);
      }
    } else {
#pragma unroll
      for (int j = 0; j < C; ++j) lo[j] = hi[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    // An empty page (min > max, from +inf / -inf) bounds nothing: -inf (and inf * 0 is NaN).
    const bool empty = __shfl_sync(kFull, int(lo[0].x > hi[0].x), 0, kLanesPerRow) != 0;
    float best = -INFINITY;
    for (int g = 0; g < group; ++g) {
      const float4* qh = sq + (h * group + g) * D / 4 + sub;
      float s = 0.0f;
#pragma unroll
      for (int j = 0; j < C; ++j) s += bound_dot(qh[j * kLanesPerRow], lo[j], hi[j]);
      s += __shfl_xor_sync(kFull, s, 4, kLanesPerRow);
      s += __shfl_xor_sync(kFull, s, 2, kLanesPerRow);
      s += __shfl_xor_sync(kFull, s, 1, kLanesPerRow);
      best = fmaxf(best, s);
    }
    if (valid && sub == 0) row_best[r] = empty ? -INFINITY : best;
  }
  __syncthreads();
  pdl_trigger();  // the selection may be scheduled; it waits for every block's scores
  float* out = a.scores + e[kSeSrcOff] + c0 + first;
  for (int p = threadIdx.x; p < count; p += blockDim.x) {
    float b = -INFINITY;
    for (int h = 0; h < hk; ++h) b = fmaxf(b, row_best[p * hk + h]);
    out[p] = b;
  }
}

template <int D>
void launch_scores(const SparseSelectArgs& a, cudaStream_t stream) {
  const int ppb = score_pages_per_block(a.num_kv_heads);
  const size_t smem = (size_t(a.num_qo_heads) * D + size_t(ppb) * a.num_kv_heads) * sizeof(float);
  if (smem > 48 * 1024)
    check_cuda(cudaFuncSetAttribute(page_scores_kernel<D>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
               "sparse page scores: shared memory");
  const dim3 grid((a.max_candidates + ppb - 1) / ppb, a.num_entries);
  launch_maybe_pdl("sparse page scores", page_scores_kernel<D>, grid, dim3(kScoreThreads), smem,
                   stream, a, ppb);
}

}  // namespace

void update_page_bounds(const PageBoundsArgs& a, cudaStream_t stream) {
  if (a.num_listed == 0) return;
  const int threads = std::min(256, std::max(32, a.num_kv_heads * a.head_dim / 2));
  page_bounds_kernel<<<a.num_listed, threads, 0, stream>>>(a);
  check_launch("update page bounds");
}

bool sparse_head_dim_supported(int head_dim) {
  return head_dim == 64 || head_dim == 96 || head_dim == 128 || head_dim == 256;
}

void sparse_page_scores(const SparseSelectArgs& a, cudaStream_t stream) {
  if (a.num_entries == 0 || a.max_candidates == 0) return;
  switch (a.head_dim) {
    case 64:
      return launch_scores<64>(a, stream);
    case 96:
      return launch_scores<96>(a, stream);
    case 128:
      return launch_scores<128>(a, stream);
    case 256:
      return launch_scores<256>(a, stream);
    default:
      throw std::runtime_error("sparse page scores: head_dim " + std::to_string(a.head_dim) +
                               " not supported (64, 96, 128, 256)");
  }
}

}  // namespace nc::cuda

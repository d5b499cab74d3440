// Sparse decode attention's kernels (sparse_kernels.h): page bounds, page scores, page selection.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "backend/cuda/cuda_check.cuh"
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
  page_scores_kernel<D><<<grid, kScoreThreads, smem, stream>>>(a, ppb);
  check_launch("sparse page scores");
}

// ---- sparse_select_pages: one block per entry ----
// One block is all an entry gets, so its time is the step's to wait for: up to the most threads a
// block may have, but no more than kSelectUnroll keys' worth for each (each histogram pass takes
// kSelectUnroll keys per thread at once; fewer warps sync faster).
constexpr int kSelectThreads = 1024;
constexpr int kSelectMinThreads = 256;
constexpr int kSelectUnroll = 4;

int select_threads(int max_candidates) {
  int t = kSelectMinThreads;
  while (t < kSelectThreads && t * kSelectUnroll < max_candidates) t *= 2;
  return t;
}
// Candidates whose keys the selection keeps in shared memory (more: read from the scores each
// pass, through L1/L2).
constexpr int kSelectSmemKeys = 24 * 1024;

// Larger float, larger key; -0 and +0 share a key (they compare equal on the host).
__device__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f == 0.0f ? 0.0f : f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Exclusive prefix sum of v over the block (in thread order); `tmp` holds 32 ints.
__device__ int block_exclusive_sum(int v, int* tmp) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  int incl = v;
  for (int o = 1; o < 32; o <<= 1) {
    const int t = __shfl_up_sync(kFull, incl, o);
    if (lane >= o) incl += t;
  }
  if (lane == 31) tmp[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int w = lane < warps ? tmp[lane] : 0;
    int wi = w;
    for (int o = 1; o < 32; o <<= 1) {
      const int t = __shfl_up_sync(kFull, wi, o);
      if (lane >= o) wi += t;
    }
    tmp[lane] = wi - w;
  }
  __syncthreads();
  const int out = tmp[warp] + incl - v;
  __syncthreads();  // tmp is reused by the next call
  return out;
}

// Warp 0: the digit (scanning bins from 255 down) where the count reaches *remaining. The one
// lane whose bins hold it returns true with *prefix and *remaining updated (the count still to
// take from that digit's bin).
__device__ bool pick_digit(const int* hist, int shift, uint32_t* prefix, int* remaining) {
  const int lane = threadIdx.x;
  int mine = 0;
  for (int b = 0; b < 8; ++b) mine += hist[255 - 8 * lane - b];
  int incl = mine;
  for (int o = 1; o < 32; o <<= 1) {
    const int t = __shfl_up_sync(kFull, incl, o);
    if (lane >= o) incl += t;
  }
  const int need = *remaining;
  int before = incl - mine;
  if (before < need && need <= incl) {
    for (int b = 0; b < 8; ++b) {
      const int bin = 255 - 8 * lane - b;
      if (before + hist[bin] >= need) {
        *prefix |= uint32_t(bin) << shift;
        *remaining = need - before;
        return true;
      }
      before += hist[bin];
    }
  }
  return false;
}

// The key of the keep-th largest candidate score (radix select, 8 bits a pass) and how many
// candidates with exactly that key are kept (the earliest ones).
template <typename KeyOf>
__device__ void select_threshold(KeyOf key_of, int m, int keep, uint32_t* thresh, int* need_eq) {
  __shared__ int hist[256];
  __shared__ uint32_t s_prefix;
  __shared__ int s_remaining;
  const int lane = threadIdx.x % 32;
  if (threadIdx.x == 0) {
    s_prefix = 0;
    s_remaining = keep;
  }
  uint32_t mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    const uint32_t prefix = s_prefix;
    // Block-uniform trip count; the kSelectUnroll keys of a thread are independent, so their
    // loads and warp matches overlap.
    for (int base = 0; base < m; base += kSelectUnroll * blockDim.x) {
      uint32_t bin[kSelectUnroll];
      bool part[kSelectUnroll];
#pragma unroll
      for (int u = 0; u < kSelectUnroll; ++u) {
        const int i = base + u * blockDim.x + threadIdx.x;
        const uint32_t k = i < m ? key_of(i) : 0u;
        part[u] = i < m && (k & mask) == prefix;
        bin[u] = (k >> shift) & 255u;
      }
#pragma unroll
      for (int u = 0; u < kSelectUnroll; ++u) {
        // One atomic per distinct bin in the warp (scores often share their top bits).
        const unsigned peers = __match_any_sync(kFull, part[u] ? bin[u] : 256u + lane);
        if (part[u] && lane == __ffs(peers) - 1) atomicAdd(&hist[bin[u]], __popc(peers));
      }
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      uint32_t p = prefix;
      int r = s_remaining;
      __syncwarp();  // every lane has read s_remaining before the winner rewrites it
      if (pick_digit(hist, shift, &p, &r)) {
        s_prefix = p;
        s_remaining = r;
      }
    }
    __syncthreads();
    mask |= 255u << shift;
  }
  *thresh = s_prefix;
  *need_eq = s_remaining;
}

__global__ void __launch_bounds__(kSelectThreads)
    select_pages_kernel(SparseSelectArgs a, int smem_keys) {
  __shared__ int tmp[32];
  extern __shared__ uint32_t skeys[];
  const int* e = a.entries + blockIdx.x * kSparseEntryFields;
  const int n = e[kSeNumPages], c0 = e[kSeCand0], c1 = e[kSeCand1], keep = e[kSeKeep];
  const float* sc = a.scores + e[kSeSrcOff];
  const int* src = a.full_indices + e[kSeSrcOff];
  const int m = c1 - c0;
  uint32_t thresh = 0;
  int need_eq = 0;
  const bool rank = keep > 0 && keep < m;
  const bool cached = m <= smem_keys;  // block-uniform
  if (rank && cached) {
    for (int i = threadIdx.x; i < m; i += blockDim.x) skeys[i] = order_key(sc[c0 + i]);
    __syncthreads();
  }
  // Candidate j's key (j = page index - c0).
  auto key_of = [&](int j) { return cached ? skeys[j] : order_key(sc[c0 + j]); };
  if (rank) select_threshold(key_of, m, keep, &thresh, &need_eq);
  // 1 keep, 0 drop, 2 a candidate tied with the threshold (kept while the ties last).
  auto cls = [&](int i) {
    if (i < c0 || i >= c1) return 1;
    if (!rank) return keep > 0 ? 1 : 0;
    const uint32_t k = key_of(i - c0);
    return k > thresh ? 1 : (k == thresh ? 2 : 0);
  };
  // Ordered compaction: warp w takes pages [lo, hi), 32 at a time (lane order = page order); a
  // page's rank among the ties and its output slot come from ballots within the warp plus the
  // block's prefix over the warps before it.
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const int seg = (n + warps - 1) / warps;
  const int lo = min(n, warp * seg), hi = min(n, lo + seg);
  const unsigned below = (1u << lane) - 1;
  int ties = 0;
  for (int base = lo; base < hi; base += 32) {
    const int i = base + lane;
    ties += __popc(__ballot_sync(kFull, i < hi && cls(i) == 2));
  }
  const int ties_before = __shfl_sync(kFull, block_exclusive_sum(lane == 0 ? ties : 0, tmp), 0);
  // The kept pages of [base, base + 32) as a lane mask; `tie` counts the ties before them.
  auto kept_mask = [&](int base, int& tie) {
    const int i = base + lane;
    const int c = i < hi ? cls(i) : 0;
    const unsigned tied = __ballot_sync(kFull, c == 2);
    const bool k = c == 1 || (c == 2 && tie + __popc(tied & below) < need_eq);
    tie += __popc(tied);
    return __ballot_sync(kFull, k);
  };
  int count = 0, tie = ties_before;
  for (int base = lo; base < hi; base += 32) count += __popc(kept_mask(base, tie));
  int pos = e[kSeOutOff] + __shfl_sync(kFull, block_exclusive_sum(lane == 0 ? count : 0, tmp), 0);
  tie = ties_before;
  for (int base = lo; base < hi; base += 32) {
    const unsigned km = kept_mask(base, tie);
    if ((km >> lane) & 1u) a.out_indices[pos + __popc(km & below)] = src[base + lane];
    pos += __popc(km);
  }
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

void sparse_select_pages(const SparseSelectArgs& a, cudaStream_t stream) {
  if (a.num_entries == 0) return;
  const int smem_keys = std::min(a.max_candidates, kSelectSmemKeys);
  const size_t smem = size_t(smem_keys) * sizeof(uint32_t);
  if (smem > 48 * 1024)
    check_cuda(cudaFuncSetAttribute(select_pages_kernel,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
               "sparse page selection: shared memory");
  select_pages_kernel<<<a.num_entries, select_threads(a.max_candidates), smem, stream>>>(a,
                                                                                         smem_keys);
  check_launch("sparse page selection");
}

}  // namespace nc::cuda

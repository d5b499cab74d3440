// Sparse decode attention's page selection (sparse_kernels.h's sparse_select_pages): one block
// per entry finds the threshold of its candidates' scores and writes its kept page ids in order.
#include <algorithm>
#include <cmath>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/sparse_kernels.h"

namespace nc::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;
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
// Rounds of 32 page ids each warp loads before the threshold's search (8: a segment of 256 pages,
// 8192 pages over 32 warps).
constexpr int kIdsAhead = 8;

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

// ---- the threshold of keys held in shared memory: a coarse pass, then the bin's keys alone ----
// At a few thousand candidates the selection's time is its chain of block-wide steps, not the
// work per key: the radix select takes four passes of four barriers each. Held keys take fewer
// steps: the keys' load also finds the range of the finite scores; one histogram of 256 bins laid
// linearly over that range; the bin where the keep-th largest key falls; then that bin's keys
// alone (a few where scores spread): ranked by one warp when at most 32, else by the radix
// select. The bin is a monotone function of the key, so every key above the bin is kept, and the
// threshold and its ties come out as the radix select over all m keys gives them. A bin of more
// than kBinKeys keys (scores bunched or all equal) falls back to the radix select over all keys.
// Measured on an H100 (2026-12-07, nc_gpu_bench sparse-parts, 16 entries): 14.1 -> 6.4 us at
// 2,000 candidates an entry, 35 -> 12 us at 8,000.
constexpr int kBinKeys = 1024;

__device__ inline float key_float(uint32_t k) {  // order_key's inverse (+0 for a zero)
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// Linear bins over [lo, hi] (keys of finite scores): keys at or below lo's take bin 0, at or above
// hi's bin 255 (infinities, NaNs' keys); monotone in the key, since rounding is monotone.
struct KeyBins {
  uint32_t klo, khi;
  float lo, scale;
  __device__ int operator()(uint32_t k) const {
    if (k <= klo) return 0;
    if (k >= khi) return 255;
    return int(fminf(fmaxf((key_float(k) - lo) * scale, 0.0f), 255.0f));
  }
};

// Warp 0, keys[0, count) with count <= 32: the remaining-th largest key and how many of its ties
// are kept (the radix select's *thresh and *need_eq over these keys).
__device__ void warp_threshold(const uint32_t* keys, int count, int remaining, uint32_t* thresh,
                               int* need_eq) {
  const int lane = threadIdx.x;
  const uint32_t mine = lane < count ? keys[lane] : 0u;
  int above = 0, equal = 0;
  for (int i = 0; i < count; ++i) {
    const uint32_t k = __shfl_sync(kFull, mine, i);
    above += k > mine;
    equal += k == mine;
  }
  if (lane < count && above < remaining && remaining <= above + equal) {
    *thresh = mine;  // lanes holding equal keys write the same values
    *need_eq = remaining - above;
  }
}

__device__ void select_threshold_cached(const float* scores, uint32_t* keys, int m, int keep,
                                        uint32_t* thresh, int* need_eq) {
  __shared__ int hist[256];
  __shared__ uint32_t s_klo, s_khi, s_bin, s_thresh, bin_keys[kBinKeys];
  __shared__ int s_remaining, s_count, s_need_eq;
  if (threadIdx.x == 0) {
    s_klo = 0xffffffffu;
    s_khi = 0;
    s_bin = 0;
    s_remaining = keep;
    s_count = 0;
  }
  for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
  uint32_t lo = 0xffffffffu, hi = 0;
  for (int base = 0; base < m; base += kSelectUnroll * blockDim.x) {
    float v[kSelectUnroll];  // loaded together: one L2 round trip per kSelectUnroll keys
#pragma unroll
    for (int u = 0; u < kSelectUnroll; ++u) {
      const int i = base + u * blockDim.x + threadIdx.x;
      v[u] = i < m ? scores[i] : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < kSelectUnroll; ++u) {
      const int i = base + u * blockDim.x + threadIdx.x;
      if (i >= m) continue;
      const uint32_t k = order_key(v[u]);
      keys[i] = k;
      if (isfinite(v[u])) {
        lo = min(lo, k);
        hi = max(hi, k);
      }
    }
  }
  lo = __reduce_min_sync(kFull, lo);
  hi = __reduce_max_sync(kFull, hi);
  __syncthreads();  // the keys and the shared initial values are written
  if (threadIdx.x % 32 == 0) {
    atomicMin(&s_klo, lo);
    atomicMax(&s_khi, hi);
  }
  __syncthreads();
  KeyBins bins{s_klo, s_khi, key_float(s_klo), 0.0f};
  if (s_klo < s_khi) {
    const float scale = 256.0f / (key_float(s_khi) - bins.lo);
    bins.scale = scale < 1e30f ? scale : 0.0f;  // a range too narrow to divide: bins 0 and 255
  }
  for (int i = threadIdx.x; i < m; i += blockDim.x) atomicAdd(&hist[bins(keys[i])], 1);
  __syncthreads();
  if (threadIdx.x < 32) {
    uint32_t b = 0;
    int r = keep;
    if (pick_digit(hist, 0, &b, &r)) {
      s_bin = b;
      s_remaining = r;
    }
  }
  __syncthreads();
  const int bin = int(s_bin), remaining = s_remaining, count = hist[bin];
  if (count > kBinKeys)  // block-uniform
    return select_threshold([&](int j) { return keys[j]; }, m, keep, thresh, need_eq);
  for (int i = threadIdx.x; i < m; i += blockDim.x)
    if (bins(keys[i]) == bin) bin_keys[atomicAdd(&s_count, 1)] = keys[i];
  __syncthreads();
  if (count > 32)
    return select_threshold([&](int j) { return bin_keys[j]; }, count, remaining, thresh, need_eq);
  if (threadIdx.x < 32) warp_threshold(bin_keys, count, remaining, &s_thresh, &s_need_eq);
  __syncthreads();
  *thresh = s_thresh;
  *need_eq = s_need_eq;
}

__global__ void __launch_bounds__(kSelectThreads)
    select_pages_kernel(SparseSelectArgs a, int smem_keys) {
  __shared__ int tmp[32];
  extern __shared__ uint32_t skeys[];
  pdl_wait();  // the scores come from the kernel before (PDL, pdl.cuh)
  const int* e = a.entries + blockIdx.x * kSparseEntryFields;
  const int n = e[kSeNumPages], c0 = e[kSeCand0], c1 = e[kSeCand1], keep = e[kSeKeep];
  const float* sc = a.scores + e[kSeSrcOff];
  const int* src = a.full_indices + e[kSeSrcOff];
  const int m = c1 - c0;
  uint32_t thresh = 0;
  int need_eq = 0;
  const bool rank = keep > 0 && keep < m;
  const bool cached = m <= smem_keys;  // block-uniform
  // The compaction's segment of this warp: pages [lo, hi), 32 at a time (lane order = page
  // order). Its first kIdsAhead rounds of page ids are loaded now, so that their latency passes
  // under the threshold's search instead of stalling each round's store.
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const int seg = (n + warps - 1) / warps;
  const int lo = min(n, warp * seg), hi = min(n, lo + seg);
  int ids[kIdsAhead];
#pragma unroll
  for (int j = 0; j < kIdsAhead; ++j) {
    const int i = lo + 32 * j + lane;
    ids[j] = i < hi ? src[i] : 0;
  }
  // Candidate j's key (j = page index - c0).
  auto key_of = [&](int j) { return cached ? skeys[j] : order_key(sc[c0 + j]); };
  if (rank && cached) select_threshold_cached(sc + c0, skeys, m, keep, &thresh, &need_eq);
  if (rank && !cached) select_threshold(key_of, m, keep, &thresh, &need_eq);
  // 1 keep, 0 drop, 2 a candidate tied with the threshold (kept while the ties last).
  auto cls = [&](int i) {
    if (i < c0 || i >= c1) return 1;
    if (!rank) return keep > 0 ? 1 : 0;
    const uint32_t k = key_of(i - c0);
    return k > thresh ? 1 : (k == thresh ? 2 : 0);
  };
  // Ordered compaction over the warps' segments: a page's rank among the ties and its output slot
  // come from ballots within the warp plus the block's prefix over the warps before it.
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
  auto write_round = [&](int base, int id) {
    const unsigned km = kept_mask(base, tie);
    if ((km >> lane) & 1u) a.out_indices[pos + __popc(km & below)] = id;
    pos += __popc(km);
  };
#pragma unroll
  for (int j = 0; j < kIdsAhead; ++j)
    if (lo + 32 * j < hi) write_round(lo + 32 * j, ids[j]);
  // (Lanes past the segment's end load nothing: past the last entry lies the end of the list.)
  for (int base = lo + 32 * kIdsAhead; base < hi; base += 32)
    write_round(base, base + lane < hi ? src[base + lane] : 0);
}

}  // namespace

void sparse_select_pages(const SparseSelectArgs& a, cudaStream_t stream) {
  if (a.num_entries == 0) return;
  const int smem_keys = std::min(a.max_candidates, kSelectSmemKeys);
  const size_t smem = size_t(smem_keys) * sizeof(uint32_t);
  // The default limit (48 KB) counts the kernel's static shared memory too (under 12 KB).
  if (smem > 36 * 1024)
    check_cuda(cudaFuncSetAttribute(select_pages_kernel,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
               "sparse page selection: shared memory");
  launch_maybe_pdl("sparse page selection", select_pages_kernel, dim3(a.num_entries),
                   dim3(select_threads(a.max_candidates)), smem, stream, a, smem_keys);
}

}  // namespace nc::cuda

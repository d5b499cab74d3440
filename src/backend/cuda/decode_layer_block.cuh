// The block-level pieces of the whole-layer decode kernel (decode_layer.cu): one block of kThreads
// per multiprocessor; grid barriers; L2 prefetches; the norm into shared memory; and the
// projections, a warp per row (or gate/up pair) whose lanes stream 16-byte chunks against the
// input held in shared memory as bf16, the first chunks preloaded into registers before the
// stage's barrier. Device code only; included by decode_layer.cu alone.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/bf16_vec.cuh"
#include "backend/cuda/decode_layer_kernels.h"

namespace nc::cuda::decode_layer {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 512, kWarps = kThreads / 32;

__device__ __forceinline__ unsigned long long now_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ float bf(const bf16* p, int64_t i) {
  return __bfloat162float(__ldcg(p + i));
}

__device__ __forceinline__ float round_bf16(float x) {
  return __bfloat162float(__float2bfloat16(x));
}

__device__ __forceinline__ float dot8(const uint4& a, const uint4& b) {
  float x[8], y[8];
  unpack8(a, x);
  unpack8(b, y);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; ++i) s = fmaf(x[i], y[i], s);
  return s;
}

__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Barrier number n (1, 2, ...) of this launch: no block goes on before every block arrived, and
// what any block wrote before it is visible to all after it.
__device__ void grid_barrier(unsigned* counter, unsigned n) {
  __syncthreads();
  if (threadIdx.x == 0) {
    // The block's writes (ordered before this thread's by __syncthreads) are released with the
    // arrival; the acquiring loads below see every block's.
    asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(counter) : "memory");
    const unsigned target = n * gridDim.x;
    while (load_acquire(counter) < target) {
    }
  }
  __syncthreads();
}

// Asynchronous copies into shared memory (cp.async, 16 bytes each, both addresses 16-byte aligned):
// what a stage reads that no earlier stage writes (the norm weights, the token's rope row, the
// context's K/V) is copied at the launch's start, so that no stage waits for it after its barrier.
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
// Until at most N of this thread's groups are in flight; a __syncthreads after it makes every
// thread's copies visible to the block.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// The block copies bytes [0, n) of src into dst (n a multiple of 16).
__device__ __forceinline__ void stage_bytes(void* dst, const void* src, int n) {
  for (int off = int(threadIdx.x) * 16; off < n; off += kThreads * 16)
    cp_async16(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off);
}

// Whether the L2 is asked for lines ahead (DecodeLayerParams::flags): one prefetch instruction per
// 128-byte line, or none.
enum class Prefetch { Lines, Off };

// The calling thread alone asks the L2 for bytes [0, n) from p.
__device__ __forceinline__ void prefetch_span(const void* p, uint32_t n, Prefetch how) {
  if (how == Prefetch::Off) return;
  const char* base = static_cast<const char*>(p);
  for (uint32_t off = 0; off < n; off += 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(base + off));
}

// Asks the L2 for bytes [0, n) from p, spread over the block's threads. Nothing waits for it: the
// reads that follow find the lines there.
__device__ void prefetch_l2(const void* p, int64_t n, Prefetch how) {
  if (how == Prefetch::Off) return;
  const char* base = static_cast<const char*>(p);
  for (int64_t off = int64_t(threadIdx.x) * 128; off < n; off += int64_t(kThreads) * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(base + off));
}

// This block's share [first, last) of n rows.
struct Rows {
  int first, last;
};
__device__ __forceinline__ Rows block_rows(int n) {
  return {int(int64_t(n) * blockIdx.x / gridDim.x), int(int64_t(n) * (blockIdx.x + 1) / gridDim.x)};
}

__device__ void prefetch_rows(const void* w, Rows r, int k, Prefetch how) {
  prefetch_l2(static_cast<const bf16*>(w) + int64_t(r.first) * k,
              int64_t(r.last - r.first) * k * int64_t(sizeof(bf16)), how);
}

// Sum over the block (every thread gets it); red: kWarps floats of shared memory.
__device__ float block_sum(float v, float* red) {
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < kWarps; ++i) s += red[i];
  __syncthreads();
  return s;
}

// xs = bf16(x * rsqrt(mean(x^2) + eps) * w) with x = a (+ b) in float32, unrounded, as
// FlashInfer's (fused add) RMSNorm computes it. n % 8 == 0, n <= kDecodeLayerMaxHidden: each
// thread holds its (at most kNormChunks) 16-byte chunks in registers, so the inputs are read once,
// all at once.
constexpr int kNormChunks = 2;
static_assert(kNormChunks * kThreads * 8 == kDecodeLayerMaxHidden, "the norm's registers");
__device__ void norm_to_smem(const bf16* a, const bf16* b, const bf16* w, int n, float eps,
                             bf16* xs, float* red) {
  float x[kNormChunks][8];
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kNormChunks; ++j) {
    const int c = int(threadIdx.x) + j * kThreads;
    if (c >= n / 8) continue;
    unpack8(__ldcg(reinterpret_cast<const uint4*>(a) + c), x[j]);
    if (b) {
      float y[8];
      unpack8(__ldcg(reinterpret_cast<const uint4*>(b) + c), y);
#pragma unroll
      for (int i = 0; i < 8; ++i) x[j][i] += y[i];
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) ss += x[j][i] * x[j][i];
  }
  const float inv = rsqrtf(block_sum(ss, red) / float(n) + eps);
#pragma unroll
  for (int j = 0; j < kNormChunks; ++j) {
    const int c = int(threadIdx.x) + j * kThreads;
    if (c >= n / 8) continue;
    float wf[8], o[8];
    unpack8(reinterpret_cast<const uint4*>(w)[c], wf);
#pragma unroll
    for (int i = 0; i < 8; ++i) o[i] = x[j][i] * inv * wf[i];
    reinterpret_cast<uint4*>(xs)[c] = pack8(o);
  }
  __syncthreads();
}

// xs = n bf16 values written by other blocks (n % 8 == 0).
__device__ void copy_to_smem(const bf16* src, int n, bf16* xs) {
  const uint4* s = reinterpret_cast<const uint4*>(src);
  uint4* d = reinterpret_cast<uint4*>(xs);
  for (int c = threadIdx.x; c < n / 8; c += kThreads) d[c] = __ldcg(s + c);
  __syncthreads();
}

// How a block's warps share a stage's rows. With more rows than warps a warp takes whole rows, two
// at a time (r and r + kWarps). With at most kWarps rows, `split` warps take each row (a power of
// two up to kMaxSplit), each a contiguous slice of its 16-byte chunks: no warp idles, and a slice
// is short enough to be preloaded whole (o and down of the Qwen3-0.6B shape: 8 rows a block).
constexpr int kMaxSplit = 8;
__device__ __forceinline__ int row_split(Rows rows) {
  const int n = rows.last - rows.first;
  if (n > kWarps) return 0;
  int s = 1;
  while (s < kMaxSplit && 2 * s * n <= kWarps) s *= 2;
  return s;
}

// Split mode: the warp's row and its slice [c0, c1) of the row's chunks.
struct Slice {
  int row, c0, c1;
};
__device__ __forceinline__ Slice warp_slice(Rows rows, int split, int chunks) {
  const int warp = threadIdx.x / 32, part = warp % split;
  return {rows.first + warp / split, chunks * part / split, chunks * (part + 1) / split};
}

// The first 16-byte chunks a lane streams, loaded into registers before the stage's barrier (the
// weights never depend on the stage before), so that the stage starts with them at hand: kPreload
// of each of the warp's first two rows, or in split mode 2 kPreload of its slice (a, then b).
constexpr int kPreload = 4;
struct Preload {
  uint4 a[kPreload], b[kPreload];
};

// Rows (r, r2) of w [*, k]: loads chunks lane + 32 j (j < kPreload) of each that exists.
__device__ void preload_rows(const bf16* __restrict__ w, int r, int r2, int last, int k,
                             Preload& pl) {
  const int lane = threadIdx.x % 32, chunks = k / 8;
  const uint4* row = reinterpret_cast<const uint4*>(w + int64_t(r < last ? r : 0) * k);
  const uint4* row2 = reinterpret_cast<const uint4*>(w + int64_t(r2 < last ? r2 : 0) * k);
#pragma unroll
  for (int j = 0; j < kPreload; ++j) {
    const int c = lane + 32 * j;
    pl.a[j] = r < last && c < chunks ? __ldcs(row + c) : make_uint4(0, 0, 0, 0);
    pl.b[j] = r2 < last && c < chunks ? __ldcs(row2 + c) : make_uint4(0, 0, 0, 0);
  }
}

// Split mode: chunks c0 + lane + 32 j of the warp's slice, j < 2 kPreload.
__device__ void preload_slice(const bf16* __restrict__ w, Slice s, int last, int k, Preload& pl) {
  const int lane = threadIdx.x % 32;
  const uint4* row = reinterpret_cast<const uint4*>(w + int64_t(s.row < last ? s.row : 0) * k);
#pragma unroll
  for (int j = 0; j < kPreload; ++j) {
    const int c = s.c0 + lane + 32 * j, c2 = c + 32 * kPreload;
    pl.a[j] = s.row < last && c < s.c1 ? __ldcs(row + c) : make_uint4(0, 0, 0, 0);
    pl.b[j] = s.row < last && c2 < s.c1 ? __ldcs(row + c2) : make_uint4(0, 0, 0, 0);
  }
}

// For rows_dot: the warp's first two rows of `rows`, or its slice.
__device__ void preload_rows(const bf16* w, Rows rows, int k, Preload& pl) {
  if (const int split = row_split(rows); split > 0)
    return preload_slice(w, warp_slice(rows, split, k / 8), rows.last, k, pl);
  const int r = rows.first + int(threadIdx.x / 32);
  preload_rows(w, r, r + kWarps, rows.last, k, pl);
}

// For pair_dot: the gate and up rows of the warp's first pair.
__device__ void preload_pair(const bf16* w, Rows rows, int inter, int k, Preload& pl) {
  const int i = rows.first + int(threadIdx.x / 32);
  const int last = i < rows.last ? inter + rows.last : 0;
  preload_rows(w, i, inter + i, last, k, pl);
}

// Two rows' dot products with xs (a warp's: rows, or a gate/up pair), starting from the preloaded
// chunks when `preloaded`: the sums of this lane.
__device__ __forceinline__ void dot_two(const uint4* row, const uint4* row2, bool two,
                                        const uint4* xv, int chunks, const Preload& pl,
                                        bool preloaded, float& acc, float& acc2) {
  const int lane = threadIdx.x % 32;
  int c = lane;
  if (preloaded) {
#pragma unroll
    for (int j = 0; j < kPreload; ++j) {
      if (c + 32 * j < chunks) {
        const uint4 x = xv[c + 32 * j];
        acc += dot8(pl.a[j], x);
        if (two) acc2 += dot8(pl.b[j], x);
      }
    }
    c += 32 * kPreload;
  }
#pragma unroll 4
  for (; c < chunks; c += 32) {
    const uint4 x = xv[c];
    acc += dot8(__ldcs(row + c), x);
    if (two) acc2 += dot8(__ldcs(row2 + c), x);
  }
}

// Split mode of rows_dot: each warp's slice from its preloaded chunks (and the rest, if any,
// streamed), the slices' sums added in shared memory (sums: kWarps floats) by the row's first
// warp. Every thread of the block must call it (it synchronises the block).
template <typename Epi>
__device__ void rows_dot_split(const bf16* __restrict__ w, const uint4* xv, Rows rows, int k,
                               int split, const Preload& pl, float* sums, Epi&& epi) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const Slice s = warp_slice(rows, split, k / 8);
  float acc = 0.0f;
  if (s.row < rows.last) {
#pragma unroll
    for (int j = 0; j < kPreload; ++j) {
      const int c = s.c0 + lane + 32 * j, c2 = c + 32 * kPreload;
      if (c < s.c1) acc += dot8(pl.a[j], xv[c]);
      if (c2 < s.c1) acc += dot8(pl.b[j], xv[c2]);
    }
    const uint4* row = reinterpret_cast<const uint4*>(w + int64_t(s.row) * k);
#pragma unroll 4
    for (int c = s.c0 + lane + 64 * kPreload; c < s.c1; c += 32)
      acc += dot8(__ldcs(row + c), xv[c]);
    acc = warp_sum(acc);
  }
  if (lane == 0) sums[warp] = acc;
  __syncthreads();
  if (lane == 0 && warp % split == 0 && s.row < rows.last) {
    float total = 0.0f;
    for (int i = 0; i < split; ++i) total += sums[warp + i];
    epi(s.row, total);
  }
}

// Rows r of w [*, k] for r in `rows`: epi(r, w[r] . xs) on one lane of the row's (first) warp.
// Either a warp takes two rows at once (r and r + kWarps), so that its lanes have twice the loads
// in flight, its first two preloaded (preload_rows); or, with at most kWarps rows, split warps
// share each row (rows_dot_split; sums: kWarps floats of shared memory).
template <typename Epi>
__device__ void rows_dot(const bf16* __restrict__ w, const bf16* xs, Rows rows, int k,
                         const Preload& pl, float* sums, Epi&& epi) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const uint4* xv = reinterpret_cast<const uint4*>(xs);
  if (const int split = row_split(rows); split > 0)
    return rows_dot_split(w, xv, rows, k, split, pl, sums, epi);
  for (int r = rows.first + warp; r < rows.last; r += 2 * kWarps) {
    const int r2 = r + kWarps;
    const bool two = r2 < rows.last;
    float acc = 0.0f, acc2 = 0.0f;
    dot_two(reinterpret_cast<const uint4*>(w + int64_t(r) * k),
            reinterpret_cast<const uint4*>(w + int64_t(two ? r2 : r) * k), two, xv, k / 8, pl,
            r == rows.first + warp, acc, acc2);
    acc = warp_sum(acc);
    if (two) acc2 = warp_sum(acc2);
    if (lane == 0) {
      epi(r, acc);
      if (two) epi(r2, acc2);
    }
  }
}

// The gate and up rows i and inter + i of w [2 inter, k] together: epi(i, gate, up) on lane 0;
// the warp's first pair comes preloaded (preload_pair).
template <typename Epi>
__device__ void pair_dot(const bf16* __restrict__ w, const bf16* xs, Rows rows, int inter, int k,
                         const Preload& pl, Epi&& epi) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const uint4* xv = reinterpret_cast<const uint4*>(xs);
  for (int i = rows.first + warp; i < rows.last; i += kWarps) {
    float ag = 0.0f, au = 0.0f;
    dot_two(reinterpret_cast<const uint4*>(w + int64_t(i) * k),
            reinterpret_cast<const uint4*>(w + int64_t(inter + i) * k), true, xv, k / 8, pl,
            i == rows.first + warp, ag, au);
    ag = warp_sum(ag);
    au = warp_sum(au);
    if (lane == 0) epi(i, ag, au);
  }
}

}  // namespace nc::cuda::decode_layer

// The GEMV-style linear of gemv_kernels.h.
//
// Each weight row is split over `wpr` warps (1..8) of a 256-thread block; each lane streams 16-byte
// chunks of the row (8 bf16, cache-streaming loads: the weights are read once) and multiplies them
// with the same chunk of every x row (cached loads: x is small and shared by all warps), keeping
// one float32 sum per x row in registers. Warp shuffles then shared memory reduce the partial sums.
// wpr grows while the grid is too small to keep the memory system busy (few output rows) and each
// lane still has several chunks to stream.
//
// The SILU variant reads gate_up rows [rows, 2k] instead of x and forms each activation chunk on
// the fly (silu_mul_linear: one kernel fewer per layer at small batches). Both are launched with
// programmatic dependent launch where pdl.h allows.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "backend/cuda/act.cuh"
#include "backend/cuda/bf16_vec.cuh"
#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/gemv_common.cuh"
#include "backend/cuda/gemv_kernels.h"
#include "backend/cuda/pdl.cuh"

namespace nc::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr int kPrefetch = 4;  // weight chunks per lane in flight before the PDL wait

// Chunk c (8 values) of x row j as floats. SILU: x is gate_up [rows, 2k] and the row's chunk is
// bf16(silu(g) * u) of its gate and up chunks, rounded as silu_and_mul_bf16 rounds its output,
// so that the fused product equals silu_and_mul followed by this GEMV bit for bit.
template <bool SILU>
__device__ __forceinline__ void load_x8(const bf16* x, int j, int k, int c, float xf[8]) {
  if constexpr (!SILU) {
    unpack8(__ldg(reinterpret_cast<const uint4*>(x + int64_t(j) * k) + c), xf);
  } else {
    const uint4* row = reinterpret_cast<const uint4*>(x + int64_t(j) * 2 * k);
    float g[8], u[8];
    unpack8(__ldg(row + c), g);
    unpack8(__ldg(row + k / 8 + c), u);
#pragma unroll
    for (int i = 0; i < 8; ++i) xf[i] = __bfloat162float(__float2bfloat16(silu(g[i]) * u[i]));
  }
}

// acc[j] += w chunk . x row j's chunk c, for the rows j < rows.
template <int NT, bool SILU>
__device__ __forceinline__ void accumulate(const uint4& wv, const bf16* x, int rows, int k, int c,
                                           float (&acc)[NT]) {
  float wf[8];
  unpack8(wv, wf);
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    if (j < rows) {
      float xf[8];
      load_x8<SILU>(x, j, k, c, xf);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[j] = fmaf(wf[i], xf[i], acc[j]);
    }
  }
}

// NT: the x rows held in registers (rows <= NT; rows past `rows` are skipped). Each lane loads its
// first kPrefetch weight chunks before waiting for the previous kernel (PDL, pdl.cuh): the weights
// never depend on it, so their reads overlap its tail. The chunks are summed in the same order
// with or without PDL.
template <int NT, bool SILU>
__global__ void __launch_bounds__(kThreads)
    gemv_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w, const void* bias, void* out,
                bool f32_out, int rows, int m, int k, int wpr) {
  __shared__ float partial[kWarps][NT];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = blockIdx.x * (kWarps / wpr) + warp / wpr, slice = warp % wpr;
  const int chunks = k / 8, step = wpr * 32, first = slice * 32 + lane;
  const bool live = row < m;
  const uint4* wr = reinterpret_cast<const uint4*>(w + int64_t(live ? row : 0) * k);
  uint4 pre[kPrefetch];
#pragma unroll
  for (int p = 0; p < kPrefetch; ++p) {
    const int c = first + p * step;
    pre[p] = live && c < chunks ? __ldcs(wr + c) : make_uint4(0, 0, 0, 0);
  }
  pdl_trigger();
  pdl_wait();  // x (and out) belong to the kernels before this one
  float acc[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) acc[j] = 0.0f;
  if (live) {
#pragma unroll
    for (int p = 0; p < kPrefetch; ++p) {
      const int c = first + p * step;
      if (c < chunks) accumulate<NT, SILU>(pre[p], x, rows, k, c, acc);
    }
#pragma unroll 4
    for (int c = first + kPrefetch * step; c < chunks; c += step)
      accumulate<NT, SILU>(__ldcs(wr + c), x, rows, k, c, acc);
  }
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    for (int off = 16; off > 0; off /= 2) acc[j] += __shfl_xor_sync(0xffffffffu, acc[j], off);
  }
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < NT; ++j) partial[warp][j] = acc[j];
  }
  __syncthreads();
  // The first warp of each row's group sums its slices; lane j writes x row j's output.
  if (slice != 0 || !live || lane >= rows || lane >= NT) return;
  float s = 0.0f;
  for (int i = 0; i < wpr; ++i) s += partial[warp + i][lane];
  const int64_t o = int64_t(lane) * m + row;
  gemv_store(out, bias, f32_out, o, row, s);
}

// 8 bf16 weights a 16-byte chunk.
int warps_per_row(int64_t m, int64_t k) {
  return gemv_warps_per_row(m, k, 8, kWarps);
}

template <int NT, bool SILU>
void launch(const void* x, const void* w, const void* bias, void* out, bool f32_out, int rows,
            int64_t m, int64_t k, cudaStream_t stream) {
  const int wpr = warps_per_row(m, k), rows_per_block = kWarps / wpr;
  const unsigned blocks = unsigned((m + rows_per_block - 1) / rows_per_block);
  launch_maybe_pdl(SILU ? "gemv (silu)" : "gemv", gemv_kernel<NT, SILU>, dim3(blocks),
                   dim3(kThreads), 0, stream, static_cast<const bf16*>(x),
                   static_cast<const bf16*>(w), bias, out, f32_out, rows, int(m), int(k), wpr);
  check_launch(SILU ? "gemv (silu)" : "gemv");
}

template <bool SILU>
void dispatch(const void* x, const void* w, const void* bias, void* out, bool f32_out, int r,
              int64_t m, int64_t k, cudaStream_t stream) {
  if (r <= 1) return launch<1, SILU>(x, w, bias, out, f32_out, r, m, k, stream);
  if (r <= 2) return launch<2, SILU>(x, w, bias, out, f32_out, r, m, k, stream);
  if (r <= 4) return launch<4, SILU>(x, w, bias, out, f32_out, r, m, k, stream);
  if (r <= 8) return launch<8, SILU>(x, w, bias, out, f32_out, r, m, k, stream);
  launch<16, SILU>(x, w, bias, out, f32_out, r, m, k, stream);
}

void check_shape(const char* what, int64_t rows, int64_t m, int64_t k, const void* x,
                 const void* w) {
  if (!gemv_supported(rows, k, x, w) || m < 1 || m >= (int64_t(1) << 31))
    throw std::runtime_error(std::string(what) + ": unsupported shape rows " +
                             std::to_string(rows) + ", m " + std::to_string(m) + ", k " +
                             std::to_string(k) + " (or unaligned pointers)");
}

}  // namespace

bool gemv_supported(int64_t rows, int64_t k, const void* x, const void* w) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return rows >= 1 && rows <= kGemvMaxRows && k % 8 == 0 && k < (int64_t(1) << 31) && aligned(x) &&
         aligned(w);
}

void gemv_bf16(const void* x, const void* w, const void* bias, void* out, bool f32_out,
               int64_t rows, int64_t m, int64_t k, cudaStream_t stream) {
  check_shape("gemv", rows, m, k, x, w);
  dispatch<false>(x, w, bias, out, f32_out, int(rows), m, k, stream);
}

void gemv_silu_bf16(const void* gate_up, const void* w, const void* bias, void* out, bool f32_out,
                    int64_t rows, int64_t m, int64_t k, cudaStream_t stream) {
  check_shape("gemv (silu)", rows, m, k, gate_up, w);
  dispatch<true>(gate_up, w, bias, out, f32_out, int(rows), m, k, stream);
}

}  // namespace nc::cuda

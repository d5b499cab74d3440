// Mixture-of-experts kernels (moe_kernels.h): routing, permutation, grouped GEMM, un-permutation.
#include <cuda_bf16.h>

#include <cfloat>
#include <stdexcept>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/moe_grouped.h"

namespace nc::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kBM = kMoeTileRows, kBN = 64, kBK = 16, kGemmThreads = 256;

unsigned blocks_for(int64_t n, int threads) {
  return unsigned((n + threads - 1) / threads);
}

// ---- routing: a warp per token ----
//
// Lane l holds the choice values of experts l, l + 32, l + 64, ... in registers. Reductions are
// xor butterflies: every lane ends with the same value, as float addition and max are
// commutative. Ties go to the lower expert (and the lower group), as on the CPU.

constexpr int kRouteWarps = 4;                        // tokens per block
constexpr int kRoutePerLane = kMaxRouteExperts / 32;  // experts per lane, at most

// The better of two candidates (value, expert); expert -1 is none.
__device__ inline void better(float& v, int& e, float ov, int oe) {
  if (oe >= 0 && (e < 0 || ov > v || (ov == v && oe < e))) v = ov, e = oe;
}

__device__ inline void warp_argmax(float& v, int& e) {
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_xor_sync(~0u, v, off);
    const int oe = __shfl_xor_sync(~0u, e, off);
    better(v, e, ov, oe);
  }
}

__device__ inline float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(~0u, v, off);
  return v;
}

__device__ inline float warp_max(float v) {
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(~0u, v, off));
  return v;
}

// The eligible groups (bit g) of grouped top-k: the topk_group groups of highest rank, a group's
// rank its best choice (softmax) or the sum of its two best (sigmoid).
__device__ uint64_t eligible_groups(const float (&c)[kRoutePerLane], int lane, int E,
                                    const MoeRouteParams& p) {
  if (p.n_group <= 1 || p.topk_group >= p.n_group) return ~uint64_t(0);
  const int per = E / p.n_group;
  float rank[64];
  for (int g = 0; g < p.n_group; ++g) {
    float a = -FLT_MAX, b = -FLT_MAX;  // this lane's two best in group g
#pragma unroll
    for (int i = 0; i < kRoutePerLane; ++i) {
      const int e = lane + 32 * i;
      if (e < g * per || e >= (g + 1) * per) continue;
      if (c[i] > a) {
        b = a;
        a = c[i];
      } else if (c[i] > b) {
        b = c[i];
      }
    }
    for (int off = 16; off > 0; off >>= 1) {
      const float oa = __shfl_xor_sync(~0u, a, off), ob = __shfl_xor_sync(~0u, b, off);
      const float hi = fmaxf(a, oa);
      b = fmaxf(fminf(a, oa), fmaxf(b, ob));
      a = hi;
    }
    rank[g] = p.sigmoid ? a + b : a;
  }
  uint64_t groups = 0;
  for (int sel = 0; sel < p.topk_group; ++sel) {
    int best_g = -1;
    float best = 0;
    for (int g = 0; g < p.n_group; ++g) {
      if ((groups >> g) & 1) continue;
      if (best_g < 0 || rank[g] > best) best_g = g, best = rank[g];
    }
    groups |= uint64_t(1) << best_g;
  }
  return groups;
}

__global__ void route_kernel(const float* logits, const float* bias, int T, MoeRouteParams p,
                             int32_t* ids, float* weights) {
  const int lane = threadIdx.x % 32;
  const int t = blockIdx.x * kRouteWarps + threadIdx.x / 32;
  if (t >= T) return;  // a whole warp leaves together
  const int E = p.num_experts, k = p.top_k, per = E / p.n_group;
  const float* l = logits + int64_t(t) * E;
  float c[kRoutePerLane];
  float m = -FLT_MAX;
#pragma unroll
  for (int i = 0; i < kRoutePerLane; ++i) {
    const int e = lane + 32 * i;
    c[i] = e < E ? l[e] : -FLT_MAX;
    m = fmaxf(m, c[i]);
  }
  m = warp_max(m);
  float sum = 0;
  if (!p.sigmoid) {
#pragma unroll
    for (int i = 0; i < kRoutePerLane; ++i)
      if (lane + 32 * i < E) sum += expf(c[i] - m);
    sum = warp_sum(sum);
  }
  auto score = [&](float logit) {
    return p.sigmoid ? 1.0f / (1.0f + expf(-logit)) : expf(logit - m) / sum;
  };
#pragma unroll
  for (int i = 0; i < kRoutePerLane; ++i) {
    const int e = lane + 32 * i;
    if (e < E) c[i] = score(c[i]) + (p.sigmoid && bias ? bias[e] : 0.0f);
  }
  const uint64_t groups = eligible_groups(c, lane, E, p);
  uint32_t taken = 0;  // bit i: this lane's expert lane + 32 i is chosen
  float total = 0;
  for (int j = 0; j < k; ++j) {
    float v = 0;
    int best_e = -1;
#pragma unroll
    for (int i = 0; i < kRoutePerLane; ++i) {
      const int e = lane + 32 * i;
      if (e < E && ((groups >> (e / per)) & 1) && !((taken >> i) & 1)) better(v, best_e, c[i], e);
    }
    warp_argmax(v, best_e);
    if ((best_e & 31) == lane) taken |= 1u << (best_e >> 5);
    const float w = score(l[best_e]);
    total += w;
    if (lane == 0) {
      ids[int64_t(t) * k + j] = best_e;
      weights[int64_t(t) * k + j] = w;
    }
  }
  if (lane != 0) return;
  if (p.renormalize && p.sigmoid) total += 1e-20f;
  for (int j = 0; j < k; ++j) {
    float& w = weights[int64_t(t) * k + j];
    if (p.renormalize) w /= total;
    w *= p.scaling;
  }
}

// ---- permutation ----

struct Layout {
  size_t counts, offsets, num_tiles, tiles, pair_pos, src_token, xs, gu, act, ys, gargs, total;
  int max_tiles;
};

Layout layout(int T, int k, int E, int H, int I) {
  Layout l{};
  size_t at = 0;
  auto take = [&](size_t bytes) {
    const size_t here = at;
    at = (at + bytes + 255) / 256 * 256;
    return here;
  };
  const int64_t pairs = int64_t(T) * k;
  l.max_tiles = int((pairs + kBM - 1) / kBM) + E;
  l.counts = take(sizeof(int) * 2 * size_t(E));  // counts, then cursors: one memset
  l.offsets = take(sizeof(int) * size_t(E + 1));
  l.num_tiles = take(sizeof(int));
  l.tiles = take(sizeof(int2) * size_t(l.max_tiles));
  l.pair_pos = take(sizeof(int) * size_t(pairs));
  l.src_token = take(sizeof(int) * size_t(pairs));
  l.xs = take(sizeof(bf16) * size_t(pairs) * H);
  l.gu = take(sizeof(bf16) * size_t(pairs) * 2 * I);
  l.act = take(sizeof(bf16) * size_t(pairs) * I);
  l.ys = take(sizeof(float) * size_t(pairs) * H);
  l.gargs = take(2 * moe_grouped_args_bytes(E));  // the grouped path's two projections
  l.total = at;
  return l;
}

__global__ void count_kernel(const int32_t* ids, int64_t pairs, int E, int* counts) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < pairs && ids[i] >= 0 && ids[i] < E) atomicAdd(&counts[ids[i]], 1);
}

// Segment offsets and the row tiles (expert, first row) in expert order: one block, a thread per
// expert summing the counts before its own (E <= kMaxRouteExperts: a few microseconds; one
// thread walking all experts cost tens).
__global__ void plan_kernel(const int* counts, int E, int* offsets, int2* tiles, int* num_tiles) {
  for (int e = threadIdx.x; e <= E; e += blockDim.x) {
    int off = 0, n = 0;
    for (int i = 0; i < e; ++i) {
      off += counts[i];
      n += (counts[i] + kBM - 1) / kBM;
    }
    offsets[e] = off;
    if (e == E) {
      *num_tiles = n;
      continue;
    }
    for (int r = 0; r < counts[e]; r += kBM) tiles[n++] = make_int2(e, off + r);
  }
}

__global__ void scatter_kernel(const int32_t* ids, int64_t pairs, int k, int E, const int* offsets,
                               int* cursor, int* pair_pos, int* src_token) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= pairs) return;
  const int e = ids[i];
  if (e < 0 || e >= E) {
    pair_pos[i] = -1;
    return;
  }
  const int pos = offsets[e] + atomicAdd(&cursor[e], 1);
  pair_pos[i] = pos;
  src_token[pos] = int(i / k);
}

__global__ void gather_kernel(const bf16* x, const int* src_token, const int* offsets, int E, int H,
                              bf16* xs) {
  const int pos = blockIdx.x;
  if (pos >= offsets[E]) return;
  const bf16* src = x + int64_t(src_token[pos]) * H;
  for (int h = threadIdx.x; h < H; h += blockDim.x) xs[int64_t(pos) * H + h] = src[h];
}

// ---- grouped GEMM: C[rows of tile] = A[rows] . W_e^T, W_e = W + e * N * K ----

__device__ inline void store(float* p, float v) {
  *p = v;
}
__device__ inline void store(bf16* p, float v) {
  *p = __float2bfloat16(v);
}

template <typename OutT>
__global__ void __launch_bounds__(kGemmThreads)
    grouped_gemm_kernel(const bf16* A, const bf16* W, OutT* C, int N, int K, const int2* tiles,
                        const int* num_tiles, const int* offsets) {
  const int tile = blockIdx.y;
  if (tile >= *num_tiles) return;
  const int e = tiles[tile].x, r0 = tiles[tile].y;
  const int r1 = min(r0 + kBM, offsets[e + 1]);
  const int n0 = blockIdx.x * kBN;
  const bf16* We = W + int64_t(e) * N * K;
  __shared__ float As[kBK][kBM + 1];
  __shared__ float Bs[kBK][kBN + 1];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;  // a 4 x 4 block of outputs each
  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += kBK) {
    for (int i = tid; i < kBM * kBK; i += kGemmThreads) {
      const int r = i / kBK, kk = i % kBK, row = r0 + r, col = k0 + kk;
      As[kk][r] = row < r1 && col < K ? __bfloat162float(A[int64_t(row) * K + col]) : 0.0f;
    }
    for (int i = tid; i < kBN * kBK; i += kGemmThreads) {
      const int n = i / kBK, kk = i % kBK, nn = n0 + n, col = k0 + kk;
      Bs[kk][n] = nn < N && col < K ? __bfloat162float(We[int64_t(nn) * K + col]) : 0.0f;
    }
    __syncthreads();
    for (int kk = 0; kk < kBK; ++kk) {  // k in a fixed order for every row (batch invariance)
      float a[4], b[4];
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty * 4 + i], b[i] = Bs[kk][tx * 4 + i];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i) {
    const int row = r0 + ty * 4 + i;
    if (row >= r1) continue;
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + tx * 4 + j;
      if (n < N) store(C + int64_t(row) * N + n, acc[i][j]);
    }
  }
}

template <typename OutT>
void grouped_gemm(const bf16* A, const bf16* W, OutT* C, int N, int K, const Layout& l, char* base,
                  cudaStream_t stream) {
  const dim3 grid(blocks_for(N, kBN), unsigned(l.max_tiles));
  grouped_gemm_kernel<OutT><<<grid, kGemmThreads, 0, stream>>>(
      A, W, C, N, K, reinterpret_cast<const int2*>(base + l.tiles),
      reinterpret_cast<const int*>(base + l.num_tiles),
      reinterpret_cast<const int*>(base + l.offsets));
  check_launch("moe grouped gemm");
}

// ---- un-permutation: each token's slots summed in slot order ----

__global__ void combine_kernel(const float* ys, const int* pair_pos, const float* w, int k, int H,
                               bf16* out) {
  const int t = blockIdx.x;
  for (int h = threadIdx.x; h < H; h += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j < k; ++j) {
      const int pos = pair_pos[int64_t(t) * k + j];
      if (pos >= 0) acc += w[int64_t(t) * k + j] * ys[int64_t(pos) * H + h];
    }
    out[int64_t(t) * H + h] = __float2bfloat16(acc);
  }
}

}  // namespace

void moe_route_f32(const float* logits, const float* bias, int tokens, const MoeRouteParams& p,
                   int32_t* ids, float* weights, cudaStream_t stream) {
  if (tokens == 0) return;
  if (p.n_group < 1 || p.n_group > 64 || p.num_experts % p.n_group != 0)
    throw std::runtime_error("moe_route: n_group must divide num_experts and be at most 64");
  if (p.num_experts > kMaxRouteExperts)
    throw std::runtime_error("moe_route: more experts than kMaxRouteExperts");
  route_kernel<<<blocks_for(tokens, kRouteWarps), 32 * kRouteWarps, 0, stream>>>(
      logits, bias, tokens, p, ids, weights);
  check_launch("moe_route");
}

size_t moe_scratch_bytes(int tokens, int top_k, int num_experts, int hidden, int inter) {
  return layout(tokens, top_k, num_experts, hidden, inter).total;
}

void moe_experts_bf16(const void* x, const int32_t* ids, const float* weights, const void* gate_up,
                      const void* down, void* out, int T, int k, int E, int H, int I, void* scratch,
                      MoeGemmPath path, cudaStream_t stream) {
  if (T == 0) return;
  const Layout l = layout(T, k, E, H, I);
  if (path == MoeGemmPath::Simt && l.max_tiles > 65535)
    throw std::runtime_error("moe_experts: too many row tiles for one SIMT launch");
  char* base = static_cast<char*>(scratch);
  int* counts = reinterpret_cast<int*>(base + l.counts);
  int* offsets = reinterpret_cast<int*>(base + l.offsets);
  int* pair_pos = reinterpret_cast<int*>(base + l.pair_pos);
  int* src_token = reinterpret_cast<int*>(base + l.src_token);
  bf16* xs = reinterpret_cast<bf16*>(base + l.xs);
  bf16* gu = reinterpret_cast<bf16*>(base + l.gu);
  bf16* act = reinterpret_cast<bf16*>(base + l.act);
  float* ys = reinterpret_cast<float*>(base + l.ys);
  const int64_t pairs = int64_t(T) * k;
  check_cuda(cudaMemsetAsync(counts, 0, sizeof(int) * 2 * size_t(E), stream), "moe memset");
  count_kernel<<<blocks_for(pairs, 256), 256, 0, stream>>>(ids, pairs, E, counts);
  check_launch("moe count");
  plan_kernel<<<1, 256, 0, stream>>>(counts, E, offsets, reinterpret_cast<int2*>(base + l.tiles),
                                     reinterpret_cast<int*>(base + l.num_tiles));
  check_launch("moe plan");
  scatter_kernel<<<blocks_for(pairs, 256), 256, 0, stream>>>(ids, pairs, k, E, offsets, counts + E,
                                                             pair_pos, src_token);
  check_launch("moe scatter");
  gather_kernel<<<unsigned(pairs), 128, 0, stream>>>(static_cast<const bf16*>(x), src_token,
                                                     offsets, E, H, xs);
  check_launch("moe gather");
  if (path == MoeGemmPath::Grouped) {
    char* args = base + l.gargs;
    const size_t per = moe_grouped_args_bytes(E);
    moe_grouped_gemm(xs, gate_up, gu, MoeGemmOut::BF16, 2 * I, H, offsets, E, args, stream);
    silu_and_mul_bf16(gu, act, int(pairs), I, stream);
    moe_grouped_gemm(act, down, ys, MoeGemmOut::F32, H, I, offsets, E, args + per, stream);
  } else {
    grouped_gemm(xs, static_cast<const bf16*>(gate_up), gu, 2 * I, H, l, base, stream);
    silu_and_mul_bf16(gu, act, int(pairs), I, stream);
    grouped_gemm(act, static_cast<const bf16*>(down), ys, H, I, l, base, stream);
  }
  combine_kernel<<<unsigned(T), 128, 0, stream>>>(ys, pair_pos, weights, k, H,
                                                  static_cast<bf16*>(out));
  check_launch("moe combine");
}

}  // namespace nc::cuda

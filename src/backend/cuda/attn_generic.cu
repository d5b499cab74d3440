// Our paged attention kernel for head dims FlashInfer's kernels cannot take (attn_generic.h).
//
// A block serves one tile of an entry's query rows for one kv head (or a chunk of its GQA group):
// up to 16 query vectors (row, query head) of that kv head, four per warp. It walks the entry's
// visible keys in tiles of 32, staged as float in shared memory, and keeps an online softmax per
// vector: lane j scores key j of the tile, then every lane accumulates its D / 32 output features.
// Pages are bf16 or FP8 E4M3 codes (PagedKV::fp8; the kernel is templated on the element type):
// codes decode exactly to float, K's scale is in io.sm_scale and V's multiplies the output.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "backend/cuda/attn_generic.h"
#include "backend/cuda/cuda_check.cuh"

namespace nc::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kVecPerWarp = 4;
constexpr int kVectors = kWarps * kVecPerWarp;  // query vectors per block
constexpr int kKeyTile = 32;                    // keys per shared-memory tile (one per lane)
constexpr float kLog2e = 1.4426950408889634f;

struct Launch {
  int tiles, rows_per_tile, heads_per_block, head_chunks;
};

Launch launch_of(const PlanInfo& p) {
  return {int(p.at(0)), int(p.at(1)), int(p.at(2)), int(p.at(3))};
}

__device__ inline float warp_max(float x) {
  for (int o = 16; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

__device__ inline float warp_sum(float x) {
  for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// The entry and row tile of block `x` (tiles numbered entry by entry, ceil(q_len / tq) each):
// warp 0 scans 32 entries at a time. entry = -1 when x is past the last tile (padding blocks).
__device__ void find_tile(const int32_t* qo_indptr, int batch, int tq, int x, int* entry,
                          int* tile) {
  const int lane = threadIdx.x;
  int base = 0;
  for (int b0 = 0; b0 < batch; b0 += 32) {
    const int b = b0 + lane;
    const int n = b < batch ? (qo_indptr[b + 1] - qo_indptr[b] + tq - 1) / tq : 0;
    int incl = n;  // inclusive prefix sum over the lanes
    for (int o = 1; o < 32; o *= 2) {
      const int y = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += y;
    }
    const unsigned hit = __ballot_sync(0xffffffffu, x < base + incl);
    if (hit != 0) {
      const int first = __ffs(hit) - 1;
      if (lane == first) *entry = b, *tile = x - (base + incl - n);
      return;
    }
    base += __shfl_sync(0xffffffffu, incl, 31);
  }
  if (lane == 0) *entry = -1;
}

struct Geometry {
  const void* pages;  // bf16 or e4m3 elements (the kernel's KV)
  const int32_t* indices;
  int64_t page_stride, half, n_stride, h_stride;  // elements
  int page_size;
};

// Two consecutive elements (at an even element offset: 4- or 2-byte aligned) as float.
template <typename KV>
__device__ inline float2 load_pair(const void* pages, int64_t at) {
  if constexpr (std::is_same_v<KV, __nv_fp8_e4m3>) {
    return static_cast<float2>(
        *reinterpret_cast<const __nv_fp8x2_e4m3*>(static_cast<const uint8_t*>(pages) + at));
  } else {
    return __bfloat1622float2(
        *reinterpret_cast<const __nv_bfloat162*>(static_cast<const __nv_bfloat16*>(pages) + at));
  }
}

// Element offset of feature 0 of key j (of the entry whose page list starts at `first_page`),
// K half; the V half is `half` further.
__device__ inline int64_t key_offset(const Geometry& g, int first_page, int j, int kvh) {
  const int page = g.indices[first_page + j / g.page_size];
  return page * g.page_stride + int64_t(j % g.page_size) * g.n_stride + kvh * g.h_stride;
}

template <int D, typename KV>
__global__ void __launch_bounds__(kWarps * 32)
    generic_attention_kernel(Geometry g, const int32_t* __restrict__ qo_indptr,
                             const int32_t* __restrict__ kv_indptr,
                             const int32_t* __restrict__ last_page_len, int batch, int tq, int gh,
                             int group, bool causal, const __nv_bfloat16* __restrict__ q,
                             __nv_bfloat16* __restrict__ o, float* __restrict__ lse, int num_qo,
                             float sm_scale, float soft_cap, int window_left, float v_scale) {
  constexpr int kPerLane = D / 32;
  __shared__ float qs[kVectors][D];
  __shared__ float ks[kKeyTile][D + 1];  // padded: lane j reads row j
  __shared__ float vs[kKeyTile][D];
  __shared__ int s_entry, s_tile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (warp == 0) find_tile(qo_indptr, batch, tq, blockIdx.x, &s_entry, &s_tile);
  __syncthreads();
  const int b = s_entry;
  if (b < 0) return;
  const int kvh = blockIdx.y, h0 = blockIdx.z * gh;  // first head of the chunk within the group
  const int qo_begin = qo_indptr[b], qo_len = qo_indptr[b + 1] - qo_begin;
  const int first_page = kv_indptr[b], num_pages = kv_indptr[b + 1] - first_page;
  const int kv_len = num_pages > 0 ? (num_pages - 1) * g.page_size + last_page_len[b] : 0;
  const int r0 = s_tile * tq, r1 = min(qo_len, r0 + tq);  // rows of this block (entry-relative)

  // Stage the block's query vectors; vector v = (row r0 + v / gh, head h0 + v % gh).
  for (int i = threadIdx.x; i < kVectors * D; i += blockDim.x) {
    const int v = i / D, d = i % D, r = r0 + v / gh, h = h0 + v % gh;
    const bool ok = v < tq * gh && r < r1 && h < group;
    qs[v][d] =
        ok ? __bfloat162float(q[(int64_t(qo_begin + r) * num_qo + kvh * group + h) * D + d]) : 0.0f;
  }
  // Keys any row of the block sees: [lo, hi).
  const int pos_first = kv_len - qo_len + r0, pos_last = kv_len - qo_len + r1 - 1;
  const int hi = causal ? min(kv_len, pos_last + 1) : kv_len;
  const int lo = window_left >= 0 ? max(0, pos_first - window_left) : 0;

  float acc[kVecPerWarp][kPerLane], m[kVecPerWarp], l[kVecPerWarp];
#pragma unroll
  for (int i = 0; i < kVecPerWarp; ++i) {
    m[i] = -INFINITY, l[i] = 0.0f;
    for (int c = 0; c < kPerLane; ++c) acc[i][c] = 0.0f;
  }
  for (int k0 = lo; k0 < hi; k0 += kKeyTile) {
    __syncthreads();  // the previous tile is consumed (and qs is staged before the first)
    for (int i = threadIdx.x; i < kKeyTile * (D / 2); i += blockDim.x) {
      const int j = i / (D / 2), d = 2 * (i % (D / 2));
      float2 kf = {0.0f, 0.0f}, vf = {0.0f, 0.0f};
      if (k0 + j < hi) {
        const int64_t at = key_offset(g, first_page, k0 + j, kvh) + d;
        kf = load_pair<KV>(g.pages, at);
        vf = load_pair<KV>(g.pages, at + g.half);
      }
      ks[j][d] = kf.x, ks[j][d + 1] = kf.y;
      vs[j][d] = vf.x, vs[j][d + 1] = vf.y;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kVecPerWarp; ++i) {
      const int v = warp * kVecPerWarp + i, r = r0 + v / gh;
      if (v >= tq * gh || r >= r1 || h0 + v % gh >= group) continue;  // uniform over the warp
      const int pos = kv_len - qo_len + r, key = k0 + lane;
      float s = 0.0f;
#pragma unroll 8
      for (int d = 0; d < D; ++d) s += qs[v][d] * ks[lane][d];
      s = soft_cap > 0.0f ? soft_cap * kLog2e * tanhf(s * sm_scale / soft_cap)
                          : s * sm_scale * kLog2e;
      const bool visible =
          key < hi && (!causal || key <= pos) && (window_left < 0 || key + window_left >= pos);
      s = visible ? s : -INFINITY;
      const float m_new = fmaxf(m[i], warp_max(s));
      if (m_new == -INFINITY) continue;  // nothing visible yet for this vector
      const float scale = exp2f(m[i] - m_new), p = exp2f(s - m_new);
      l[i] = l[i] * scale + warp_sum(p);
      m[i] = m_new;
      for (int c = 0; c < kPerLane; ++c) acc[i][c] *= scale;
#pragma unroll
      for (int j = 0; j < kKeyTile; ++j) {
        const float pj = __shfl_sync(0xffffffffu, p, j);
        for (int c = 0; c < kPerLane; ++c) acc[i][c] += pj * vs[j][lane + 32 * c];
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kVecPerWarp; ++i) {
    const int v = warp * kVecPerWarp + i, r = r0 + v / gh, h = h0 + v % gh;
    if (v >= tq * gh || r >= r1 || h >= group) continue;
    const int64_t row_head = int64_t(qo_begin + r) * num_qo + kvh * group + h;
    const float inv = l[i] > 0.0f ? v_scale / l[i] : 0.0f;
    for (int c = 0; c < kPerLane; ++c)
      o[row_head * D + lane + 32 * c] = __float2bfloat16(acc[i][c] * inv);
    if (lse != nullptr && lane == 0) lse[row_head] = l[i] > 0.0f ? m[i] + log2f(l[i]) : -INFINITY;
  }
}

}  // namespace

bool generic_attention_serves(int head_dim) {
  return head_dim == 96;
}

// Rows per tile: as many as fill the block's 16 vectors with the whole GQA group (groups over 16
// heads are split into chunks of 16, one block each). Eager plans launch exactly the tiles of
// the level; graph plans the bound ceil(rows / tq) + batch, which depends only on the slot.
PlanInfo generic_attention_plan(const PlanQuery& q) {
  if (!generic_attention_serves(q.head_dim))
    throw std::runtime_error("generic attention: head_dim " + std::to_string(q.head_dim) +
                             " not served");
  const int group = q.num_qo_heads / q.num_kv_heads;
  const int gh = std::min(group, kVectors), tq = kVectors / gh;
  const int chunks = (group + gh - 1) / gh;
  int64_t tiles = 0;
  if (q.cuda_graph) {
    tiles = (int64_t(q.total_rows) + tq - 1) / tq + q.batch_size;
  } else {
    for (int b = 0; b < q.batch_size; ++b)
      tiles += (q.qo_indptr_h[b + 1] - q.qo_indptr_h[b] + tq - 1) / tq;
  }
  return {tiles, tq, gh, chunks};
}

void generic_attention_run(const PlanInfo& plan, const PagedKV& kv, const int32_t* qo_indptr,
                           bool causal, const AttnIO& io, cudaStream_t stream) {
  const Launch L = launch_of(plan);
  if (L.tiles == 0) return;
  const int64_t D = kv.head_dim;
  Geometry g;
  g.pages = kv.pages;
  g.indices = kv.indices;
  g.half = int64_t(kv.page_size) * kv.num_kv_heads * D;
  g.page_stride = 2 * g.half;
  g.n_stride = kv.hnd ? D : kv.num_kv_heads * D;
  g.h_stride = kv.hnd ? kv.page_size * D : D;
  g.page_size = kv.page_size;
  const int group = io.num_qo_heads / kv.num_kv_heads;
  const dim3 grid{unsigned(L.tiles), unsigned(kv.num_kv_heads), unsigned(L.head_chunks)};
  // bf16 pages take no V scale (1: the output as before, bit for bit).
  const float v_scale = kv.fp8 ? io.v_scale : 1.0f;
  auto launch = [&](auto kernel) {
    kernel<<<grid, kWarps * 32, 0, stream>>>(
        g, qo_indptr, kv.indptr, kv.last_page_len, kv.batch_size, L.rows_per_tile,
        L.heads_per_block, group, causal, static_cast<const __nv_bfloat16*>(io.q),
        static_cast<__nv_bfloat16*>(io.o), io.lse, io.num_qo_heads, io.sm_scale, io.logits_soft_cap,
        io.window_left, v_scale);
  };
  switch (kv.head_dim) {
    case 96:
      if (kv.fp8)
        launch(generic_attention_kernel<96, __nv_fp8_e4m3>);
      else
        launch(generic_attention_kernel<96, __nv_bfloat16>);
      break;
    default:
      throw std::runtime_error("generic attention: head_dim " + std::to_string(kv.head_dim) +
                               " not instantiated");
  }
  check_launch("generic attention");
}

}  // namespace nc::cuda

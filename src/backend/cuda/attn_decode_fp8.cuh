// Our decode kernel over FP8 (e4m3) pages: one query row per request, every query head of a KV
// head's GQA group at once, on tensor cores (mma.sync m16n8k16, f16 operands, f32 accumulators).
//
// Why our own: FlashInfer's kernels read FP8 pages at 0.60-0.82 of the copy rate where they read
// bf16 at 0.9-1.0 (docs/benchmarks.md, "FP8 KV cache"). Its CUDA-core kernel converts every code
// once per query head (bound by arithmetic from GQA group 4) and its tensor-core kernel, the
// prefill kernel as decode, stages half the bytes per tile. Here a lane converts each code it
// loads exactly once (e4m3 -> f16 is exact: one cvt per two codes) and feeds it straight from its
// registers to the tensor cores, and each warp keeps its next two 16-token steps' loads in flight
// while it computes the current one.
//
// Layout (the trick that avoids shared memory): q.k sums over the head dims in any order, so each
// lane loads a contiguous slice of a token's K row and the same permutation is applied to q.
//   - Scores S[head][token] = q . K: q is the MMA's A (16 rows: the group's heads, zero past the
//     group), K the B operand (8 tokens a tile, two tiles a step). Lane (g = lane/4, c = lane%4)
//     loads K bytes [c*D/4, (c+1)*D/4) of tokens t0+g and t0+8+g; in k-step s its B registers are
//     bytes 4s..4s+3 of that slice, and its A registers are q at the same dims.
//   - Output O[head][dim] += P . V: P (the scores' C fragments, as f16) is A; V is B with the
//     tokens as k. Lane (g, c) loads V bytes [g*D/8, (g+1)*D/8) of tokens t0+2c, +1, +8, +9 and
//     pairs the two tokens' bytes (one byte_perm) for the B registers; n-tile i, column n is dim
//     n*D/8 + i, which the epilogue undoes.
// q is multiplied in f16 (exact for bf16 values of magnitude 6e-5 to 65504; a larger one would
// become inf, far beyond any model's queries).
// Online softmax in base 2 (scores times sm_scale*log2(e)), per warp; the block's 4 warps take
// interleaved 16-token steps of the block's chunk and merge in shared memory at the end. The work
// split (request, chunk) per block and the split-KV merge are FlashInfer's decode plan's (its
// request_indices / kv_tile_indices / kv_chunk_size, graph-safe with block_valid_mask) and its
// VariableLengthMergeStates; the output and LSE follow its decode kernel's conventions (LSE in
// base 2, v_scale applied to each partial), so cascades merge it like FlashInfer's own.
#pragma once
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdlib>
#include <flashinfer/attention/cascade.cuh>
#include <flashinfer/math.cuh>
#include <tuple>
#include <vector>

#include "backend/cuda/attn_common.cuh"
#include "backend/cuda/pdl.cuh"

namespace nc::cuda::fp8_decode {

constexpr uint32_t kWarps = 4;
constexpr uint32_t kThreads = kWarps * 32;
constexpr uint32_t kStep = 16;  // tokens a warp takes per step: two 8-token score tiles
constexpr uint32_t kMaxGroup = 16;
constexpr uint32_t kMaxGridY = 65535;  // the grid's y: the plan's padded batch

// Two e4m3 codes (low byte first) as an f16x2 register, exactly.
__device__ __forceinline__ uint32_t e4m3x2_to_f16x2(uint32_t two) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(two & 0xffffu), __NV_E4M3);
  return uint32_t(h.x) | (uint32_t(h.y) << 16);
}

__device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// d += a . b (m16n8k16, row-major A, column-major B, f16 in, f32 accumulate).
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <uint32_t BYTES>
struct Bytes {
  uint32_t w[BYTES / 4];
};

// One warp step's codes in registers: K of 2 tokens (the lane's quarter of the dims), V of 4
// tokens (its eighth).
template <uint32_t D>
struct StepCodes {
  Bytes<D / 4> k[2];
  Bytes<D / 8> v[4];
};

// Where a request's tokens live: token t of the request is entry t % page_size of page
// indices[first_page + t / page_size]; a token past `end` reads the last valid one (its score is
// masked, its P is 0, and its codes are finite).
template <typename Paged>
struct TokenAddress {
  const Paged& kv;
  uint32_t first_page, kv_head, end;
  __device__ __forceinline__ size_t operator()(uint32_t t) const {
    t = min(t, end - 1);
    uint32_t page, entry;
    kv.page_size.divmod(t, page, entry);
    return kv.get_elem_offset(__ldg(kv.indices + first_page + page), kv_head, entry, 0);
  }
};

// A lane loads a step's codes straight into registers (16-byte loads; V at head_dim 64: 8-byte
// loads), two steps ahead of the one it computes.
template <uint32_t BYTES>
__device__ __forceinline__ void load_piece(const uint8_t* src, uint32_t* w) {
  if constexpr (BYTES % 16 == 0) {
#pragma unroll
    for (uint32_t i = 0; i < BYTES / 16; ++i) {
      const uint4 x = __ldg(reinterpret_cast<const uint4*>(src) + i);
      w[4 * i] = x.x, w[4 * i + 1] = x.y, w[4 * i + 2] = x.z, w[4 * i + 3] = x.w;
    }
  } else {
    const uint2 x = __ldg(reinterpret_cast<const uint2*>(src));
    w[0] = x.x, w[1] = x.y;
  }
}

template <uint32_t D, typename Paged>
__device__ __forceinline__ void load_step(const Paged& kv, const TokenAddress<Paged>& addr,
                                          uint32_t t0, uint32_t g, uint32_t c, StepCodes<D>& out) {
  const uint8_t* k = reinterpret_cast<const uint8_t*>(kv.k_data);
  const uint8_t* v = reinterpret_cast<const uint8_t*>(kv.v_data);
#pragma unroll
  for (uint32_t tile = 0; tile < 2; ++tile)
    load_piece<D / 4>(k + addr(t0 + 8 * tile + g) + c * (D / 4), out.k[tile].w);
#pragma unroll
  for (uint32_t j = 0; j < 4; ++j)
    load_piece<D / 8>(v + addr(t0 + 2 * c + (j & 1) + 8 * (j >> 1)) + g * (D / 8), out.v[j].w);
}

// A warp's running softmax state for its two rows (heads g and g + 8) and its O fragments.
template <uint32_t D>
struct WarpState {
  float o[D / 8][4];
  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.0f, 0.0f};  // this lane's partial row sums (summed over the quad at the end)
};

template <uint32_t D>
__device__ __forceinline__ void compute_step(const uint32_t (&qa)[D / 16][4],
                                             const StepCodes<D>& codes, uint32_t t0, uint32_t end,
                                             uint32_t c, float scale_log2, WarpState<D>& st) {
  // Scores: s[tile][0..1] row g, tokens t0 + 8 tile + 2c + {0,1}; [2..3] the same for row g + 8.
  float s[2][4] = {};
#pragma unroll
  for (uint32_t tile = 0; tile < 2; ++tile)
#pragma unroll
    for (uint32_t ks = 0; ks < D / 16; ++ks) {
      const uint32_t w = codes.k[tile].w[ks];
      mma(s[tile], qa[ks], e4m3x2_to_f16x2(w), e4m3x2_to_f16x2(w >> 16));
    }
  float step_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (uint32_t tile = 0; tile < 2; ++tile)
#pragma unroll
    for (uint32_t j = 0; j < 4; ++j) {
      const bool valid = t0 + 8 * tile + 2 * c + (j & 1) < end;
      s[tile][j] = valid ? s[tile][j] * scale_log2 : -INFINITY;
      step_max[j >> 1] = fmaxf(step_max[j >> 1], s[tile][j]);
    }
  float rescale[2];
#pragma unroll
  for (uint32_t r = 0; r < 2; ++r) {
    step_max[r] = fmaxf(step_max[r], __shfl_xor_sync(0xffffffffu, step_max[r], 1));
    step_max[r] = fmaxf(step_max[r], __shfl_xor_sync(0xffffffffu, step_max[r], 2));
    const float m_new = fmaxf(st.m[r], step_max[r]);  // finite: the step has a valid token
    rescale[r] = flashinfer::math::ptx_exp2(st.m[r] - m_new);
    st.m[r] = m_new;
    st.l[r] *= rescale[r];
  }
#pragma unroll
  for (uint32_t tile = 0; tile < 2; ++tile)
#pragma unroll
    for (uint32_t j = 0; j < 4; ++j) {
      s[tile][j] = flashinfer::math::ptx_exp2(s[tile][j] - st.m[j >> 1]);
      st.l[j >> 1] += s[tile][j];
    }
#pragma unroll
  for (uint32_t i = 0; i < D / 8; ++i) {
    st.o[i][0] *= rescale[0], st.o[i][1] *= rescale[0];
    st.o[i][2] *= rescale[1], st.o[i][3] *= rescale[1];
  }
  // P as the A operand over the step's 16 tokens (k = token - t0).
  const uint32_t pa[4] = {pack_f16x2(s[0][0], s[0][1]), pack_f16x2(s[0][2], s[0][3]),
                          pack_f16x2(s[1][0], s[1][1]), pack_f16x2(s[1][2], s[1][3])};
#pragma unroll
  for (uint32_t w = 0; w < D / 32; ++w) {
    // Bytes 4w..4w+3 of the lane's V slice, token pairs (2c, 2c+1) and (2c+8, 2c+9) interleaved.
    const uint32_t lo01 = __byte_perm(codes.v[0].w[w], codes.v[1].w[w], 0x5140);
    const uint32_t hi01 = __byte_perm(codes.v[0].w[w], codes.v[1].w[w], 0x7362);
    const uint32_t lo89 = __byte_perm(codes.v[2].w[w], codes.v[3].w[w], 0x5140);
    const uint32_t hi89 = __byte_perm(codes.v[2].w[w], codes.v[3].w[w], 0x7362);
    mma(st.o[4 * w], pa, e4m3x2_to_f16x2(lo01), e4m3x2_to_f16x2(lo89));
    mma(st.o[4 * w + 1], pa, e4m3x2_to_f16x2(lo01 >> 16), e4m3x2_to_f16x2(lo89 >> 16));
    mma(st.o[4 * w + 2], pa, e4m3x2_to_f16x2(hi01), e4m3x2_to_f16x2(hi89));
    mma(st.o[4 * w + 3], pa, e4m3x2_to_f16x2(hi01 >> 16), e4m3x2_to_f16x2(hi89 >> 16));
  }
}

// Warp `warp` of the block runs the steps at start + (warp + kWarps i) * kStep, i = 0, 1, ...,
// with three register sets in rotation: step i computes from one while i + 1 and i + 2 load.
// (Two steps ahead took 1-3% less time than one in `nc_gpu_bench fp8kv`, H100, 2026-12-06.)
// The first two steps' loads are issued before `load_q` runs (q's latency then overlaps theirs
// instead of delaying them: a block's fixed cost is a sizeable part of a short request's time).
template <uint32_t D, typename Paged, typename LoadQ>
__device__ __forceinline__ void run_steps(const Paged& kv, const TokenAddress<Paged>& addr,
                                          LoadQ&& load_q, uint32_t start, uint32_t end,
                                          uint32_t warp, uint32_t g, uint32_t c, float scale_log2,
                                          WarpState<D>& st) {
  const uint32_t first = start + warp * kStep;
  const uint32_t steps = end > first ? (end - first + kWarps * kStep - 1) / (kWarps * kStep) : 0;
  auto step_t0 = [&](uint32_t i) { return first + kWarps * kStep * i; };
  StepCodes<D> s0, s1, s2;
  if (steps > 0) load_step<D>(kv, addr, step_t0(0), g, c, s0);
  if (steps > 1) load_step<D>(kv, addr, step_t0(1), g, c, s1);
  uint32_t qa[D / 16][4];
  load_q(qa);
  auto advance = [&](uint32_t i, const StepCodes<D>& cur, StepCodes<D>& free) {
    if (i + 2 < steps) load_step<D>(kv, addr, step_t0(i + 2), g, c, free);
    compute_step<D>(qa, cur, step_t0(i), end, c, scale_log2, st);
  };
  for (uint32_t i = 0; i < steps; i += 3) {
    advance(i, s0, s2);
    if (i + 1 >= steps) break;
    advance(i + 1, s1, s0);
    if (i + 2 >= steps) break;
    advance(i + 2, s2, s1);
  }
}

// q of heads g and g + 8 (zero past the group) at the lane's K dims (D / 4 contiguous values,
// 16-byte loads), as A fragments per k-step.
template <uint32_t D, bool WIDE, typename Params>
__device__ __forceinline__ void load_q(const Params& p, uint32_t b, uint32_t kv_head,
                                       uint32_t group, uint32_t g, uint32_t c,
                                       uint32_t (&qa)[D / 16][4]) {
#pragma unroll
  for (uint32_t ks = 0; ks < D / 16; ++ks) qa[ks][1] = qa[ks][3] = 0u;
#pragma unroll
  for (uint32_t r = 0; r < (WIDE ? 2 : 1); ++r) {
    const uint32_t row = g + 8 * r;
    uint4 raw[D / 32] = {};  // 8 bf16 each
    if (row < group) {
      const bf16* q = p.q + size_t(b) * p.q_stride_n +
                      size_t(kv_head * group + row) * p.q_stride_h + c * (D / 4);
#pragma unroll
      for (uint32_t i = 0; i < D / 32; ++i) raw[i] = __ldg(reinterpret_cast<const uint4*>(q) + i);
    }
    const bf16* x = reinterpret_cast<const bf16*>(raw);
#pragma unroll
    for (uint32_t ks = 0; ks < D / 16; ++ks) {
      const float x0 = __bfloat162float(x[4 * ks]), x1 = __bfloat162float(x[4 * ks + 1]);
      const float x2 = __bfloat162float(x[4 * ks + 2]), x3 = __bfloat162float(x[4 * ks + 3]);
      qa[ks][r] = pack_f16x2(x0, x1);      // a0 / a1: dims 4ks, 4ks+1
      qa[ks][2 + r] = pack_f16x2(x2, x3);  // a2 / a3: dims 4ks+2, 4ks+3
    }
  }
}

// The block's merge: each warp's rows (unnormalised O, m, l) to shared memory, then one pass
// over the group's rows x D writes O / l * v_scale and (row's first thread) the LSE.
template <uint32_t D>
struct MergeSmem {
  float o[kWarps][kMaxGroup][D];
  float m[kWarps][kMaxGroup];
  float l[kWarps][kMaxGroup];
};

// WIDE: groups of 9-16 heads (rows g + 8 in use); otherwise those rows' q registers are zero
// constants, which frees 16 registers a lane.
template <uint32_t D, bool WIDE, typename Params>
__global__ void __launch_bounds__(kThreads, 2) decode_kernel(const __grid_constant__ Params p) {
  extern __shared__ __align__(16) uint8_t smem_bytes[];
  // The KV heads of one (request, chunk) are neighbours in launch order: they read the same pages
  // (NHD: interleaved rows) at about the same time.
  const uint32_t bx = blockIdx.y, kv_head = blockIdx.x;
  pdl_wait();  // q, the pages and the plan come from the work before (PDL, pdl.cuh)
  if (p.block_valid_mask != nullptr && !p.block_valid_mask[bx]) return;
  const uint32_t lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, c = lane % 4;
  const auto& kv = p.paged_kv;
  const uint32_t group = p.num_qo_heads / kv.num_heads;
  const uint32_t b = p.request_indices[bx];
  const uint32_t kv_len = kv.get_length(b);
  const uint32_t chunk = p.partition_kv ? uint32_t(*p.kv_chunk_size_ptr) : kv_len;
  const uint32_t start = p.partition_kv ? p.kv_tile_indices[bx] * chunk : 0;
  const uint32_t end = min(start + chunk, kv_len);
  const float scale_log2 = p.sm_scale * 1.4426950408889634f;

  WarpState<D> st;
#pragma unroll
  for (uint32_t i = 0; i < D / 8; ++i) st.o[i][0] = st.o[i][1] = st.o[i][2] = st.o[i][3] = 0.0f;

  using Paged = std::remove_cvref_t<decltype(kv)>;
  const TokenAddress<Paged> addr{kv, uint32_t(kv.indptr[b]), kv_head, end};
  auto q_loader = [&](uint32_t(&qa)[D / 16][4]) {
    load_q<D, WIDE>(p, b, kv_head, group, g, c, qa);
  };
  run_steps<D>(kv, addr, q_loader, start, end, warp, g, c, scale_log2, st);
  pdl_trigger();  // the merge (or the next kernel) may be scheduled; it waits for this one
  MergeSmem<D>& sm = *reinterpret_cast<MergeSmem<D>*>(smem_bytes);
#pragma unroll
  for (uint32_t r = 0; r < (WIDE ? 2 : 1); ++r) {
    st.l[r] += __shfl_xor_sync(0xffffffffu, st.l[r], 1);
    st.l[r] += __shfl_xor_sync(0xffffffffu, st.l[r], 2);
    const uint32_t row = g + 8 * r;
    if (row >= group) continue;
    if (c == 0) sm.m[warp][row] = st.m[r], sm.l[warp][row] = st.l[r];
#pragma unroll
    for (uint32_t i = 0; i < D / 8; ++i) {
      sm.o[warp][row][(2 * c) * (D / 8) + i] = st.o[i][2 * r];
      sm.o[warp][row][(2 * c + 1) * (D / 8) + i] = st.o[i][2 * r + 1];
    }
  }
  __syncthreads();
  for (uint32_t idx = threadIdx.x; idx < group * D; idx += kThreads) {
    const uint32_t row = idx / D, dim = idx % D;
    float m = -INFINITY;
#pragma unroll
    for (uint32_t w = 0; w < kWarps; ++w) m = fmaxf(m, sm.m[w][row]);
    float l = 0.0f, o = 0.0f;
#pragma unroll
    for (uint32_t w = 0; w < kWarps; ++w) {
      const float f =
          sm.m[w][row] == -INFINITY ? 0.0f : flashinfer::math::ptx_exp2(sm.m[w][row] - m);
      l += sm.l[w][row] * f;
      o += sm.o[w][row][dim] * f;
    }
    const uint32_t head = kv_head * group + row;
    p.o[(size_t(bx) * p.num_qo_heads + head) * D + dim] =
        __float2bfloat16(l > 0.0f ? o / l * p.v_scale : 0.0f);
    if (dim == 0 && p.lse != nullptr)
      p.lse[bx * p.num_qo_heads + head] = l > 0.0f ? m + flashinfer::math::ptx_log2(l) : -INFINITY;
  }
}

// Tuning knobs for A/B runs, read once: NC_FP8_DECODE_WAVES and NC_FP8_DECODE_MIN_CHUNK
// (estimate_work below).
inline int env_int(const char* name, int fallback) {
  const char* e = std::getenv(name);
  const int v = e != nullptr ? std::atoi(e) : 0;
  return v > 0 ? v : fallback;
}

// One instantiation of the kernel and its shared memory (the block's merge: 33 KB at head_dim
// 128).
template <uint32_t D, bool WIDE, typename Params>
struct Kernel {
  static constexpr size_t kSmem = sizeof(MergeSmem<D>);
  static cudaError_t blocks_per_sm(int* n) {
    return cudaOccupancyMaxActiveBlocksPerMultiprocessor(n, decode_kernel<D, WIDE, Params>,
                                                         kThreads, kSmem);
  }
  static cudaError_t launch(dim3 grid, const Params& p, cudaStream_t stream, bool pdl) {
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = dim3(kThreads);
    config.dynamicSmemBytes = kSmem;
    config.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    config.attrs = attr;
    config.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&config, decode_kernel<D, WIDE, Params>, p);
  }
};

template <uint32_t D, typename Params, typename F>
cudaError_t with_kernel(bool wide, F&& f) {
  return wide ? f(Kernel<D, true, Params>{}) : f(Kernel<D, false, Params>{});
}

// The plan's work estimate for this kernel (the signature of FlashInfer's
// BatchDecodeWithPagedKVCacheWorkEstimationDispatched): a "grid" of kWaves times the blocks that
// fit on the GPU at once, so that a split plan gives every SM several blocks in turn (a wave's
// tail is then a fraction of a block, not of the step), and chunks of at least kMinChunk tokens.
// nano-vLLM's workload (Qwen3-0.6B shape, H100, 2026-12-06) by waves: 2: 26,650 output tok/s,
// 3: 26,522, 4: 26,521, 6: 26,196, 8: 25,753; `nc_gpu_bench fp8kv` at batch 64 x 2048 took the
// fraction of the copy rate from 0.70 (8 waves) to 0.76 (4).
constexpr uint32_t kWaves = 3, kMinChunk = 256;

template <uint32_t D, typename Params>
cudaError_t estimate_work(bool& split_kv, uint32_t& max_grid_size,
                          uint32_t& max_num_pages_per_batch, uint32_t& new_batch_size,
                          uint32_t& gdy, uint32_t batch_size, int32_t* kv_indptr_h,
                          uint32_t page_size, bool enable_cuda_graph, uint32_t num_kv_heads,
                          bool wide) {
  int dev = 0, num_sm = 0, per_sm = 0;
  cudaError_t st = cudaGetDevice(&dev);
  if (st == cudaSuccess) st = cudaDeviceGetAttribute(&num_sm, cudaDevAttrMultiProcessorCount, dev);
  if (st == cudaSuccess)
    st = with_kernel<D, Params>(wide, [&](auto k) { return k.blocks_per_sm(&per_sm); });
  if (st != cudaSuccess) return st;
  gdy = num_kv_heads;
  static const uint32_t waves = uint32_t(env_int("NC_FP8_DECODE_WAVES", int(kWaves)));
  static const uint32_t min_chunk = uint32_t(env_int("NC_FP8_DECODE_MIN_CHUNK", int(kMinChunk)));
  max_grid_size = uint32_t(std::max(per_sm, 1) * num_sm) * waves;
  std::vector<int32_t> pages(batch_size);
  for (uint32_t i = 0; i < batch_size; ++i) pages[i] = kv_indptr_h[i + 1] - kv_indptr_h[i];
  if (batch_size * gdy >= max_grid_size) {
    split_kv = false;
    max_num_pages_per_batch = 1;
    for (int32_t n : pages)
      max_num_pages_per_batch = std::max<uint32_t>(max_num_pages_per_batch, n);
    new_batch_size = batch_size;
    return cudaSuccess;
  }
  std::tie(max_num_pages_per_batch, new_batch_size) =
      flashinfer::PartitionPagedKVCacheBinarySearchMinNumPagePerBatch(
          max_grid_size, gdy, pages, std::max(min_chunk / page_size, 1u));
  split_kv = new_batch_size != batch_size || enable_cuda_graph;
  return cudaSuccess;
}

// A decode kernel's launch over FlashInfer's decode plan (ours, and FlashInfer's own kernel that
// attn_decode.cuh launches over fp8 pages): with split-KV scratch (tmp_v), `launch_kernel` gets
// params whose o/lse are the scratch and partition_kv set, each block writing its chunk's partial
// output and LSE at its block index, and FlashInfer's merge then writes the real o/lse; without,
// the kernel writes them itself.
template <uint32_t D, typename Params, typename LaunchKernel>
cudaError_t launch_then_merge(Params p, bf16* tmp_v, float* tmp_s, cudaStream_t stream, bool pdl,
                              LaunchKernel&& launch_kernel) {
  bf16* o = p.o;
  float* lse = p.lse;
  p.partition_kv = tmp_v != nullptr;
  if (p.partition_kv) {
    p.o = tmp_v;
    p.lse = tmp_s;
  }
  cudaError_t st = launch_kernel(p);
  if (st != cudaSuccess || !p.partition_kv) return st;
  return flashinfer::VariableLengthMergeStates(tmp_v, tmp_s, p.o_indptr, o, lse,
                                               p.paged_kv.batch_size, nullptr, p.num_qo_heads, D,
                                               pdl, stream);
}

template <uint32_t D, typename Params>
cudaError_t launch(const Params& params, bf16* tmp_v, float* tmp_s, cudaStream_t stream, bool pdl) {
  return launch_then_merge<D>(params, tmp_v, tmp_s, stream, pdl, [&](Params& p) {
    const uint32_t num_kv_heads = p.paged_kv.num_heads;
    const dim3 grid(num_kv_heads, p.padded_batch_size);
    return with_kernel<D, Params>(p.num_qo_heads / num_kv_heads > 8,
                                  [&](auto k) { return k.launch(grid, p, stream, pdl); });
  });
}

}  // namespace nc::cuda::fp8_decode

// FlashInfer's Hopper batch prefill (sm90: wgmma, TMA for Q, cp.async page gathers for K/V) over
// paged KV, bf16, non-causal: the shared (prefix) levels of cascade steps. Two variants, both
// compiled ahead: FlashInfer's StandardAttention and its LogitsSoftCap (chosen per run by
// AttnIO::logits_soft_cap > 0). No sliding-window instantiation: shared levels are never
// windowed (the window applies to the own level, which is causal and runs FA2 or decode).
//
// FlashInfer's own sm90 plan (PrefillSM90Plan) never splits a query tile's KV: one work item is
// (entry, query tile of CTA_Q rows, query head) over the entry's whole KV. A cascade shared level
// is few entries with few query tiles over a long prefix (e.g. 1 entry, 128 rows, 32 heads over
// 32k tokens: 32 work items for 132 SMs), so this file plans its own schedule in the format the
// kernel's persistent tile scheduler reads, and splits long KV into page-aligned chunks when that
// shortens the estimated makespan. The kernel addresses Q and O through the same row offset, so a
// split entry's query rows are replicated once per chunk (a row gather), each chunk writes its own
// partial output and base-2 LSE, and a small kernel here merges the partial states per row.
// (Longer than ~450 lines because the schedule, the launch and the merge share one set of
// FlashInfer template instantiations that take minutes to compile: splitting them would compile
// the CUTLASS headers twice.)
//
// This translation unit includes only the hopper headers: FlashInfer's FA2 parameter structs and
// variants (attn_common.cuh) share names with the hopper ones.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <flashinfer/attention/hopper/default_params.cuh>
#include <flashinfer/attention/hopper/prefill_sm90.cuh>
#include <flashinfer/attention/hopper/variants.cuh>
#include <flashinfer/cutlass_utils.cuh>
#include <queue>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/kernels.h"

namespace nc::cuda {
namespace {

using CBF16 = cutlass::bfloat16_t;
using Sm90Params = flashinfer::BatchPrefillPagedParams<CBF16, CBF16, CBF16, int32_t>;

// The kernel's query tile (CTA_Q) per head dim: FlashInfer's paged sm90 dispatch uses 128 rows
// for head_dim 128 and 192 for 64.
int cta_q(int head_dim) {
  return head_dim == 64 ? 192 : 128;
}

int sm_count() {
  int dev = 0, n = 0;
  check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev), "SM count");
  return n;
}

// One work item of the persistent scheduler.
struct Work {
  int32_t qo_tile, qo_indptr, kv_indptr, qo_len, kv_len, head, batch;
  int64_t cost;
};

// An entry of the level as the planner sees it.
struct Entry {
  int q_begin, q_len, page_begin, pages, kv_len;
};

// The schedule of one level: per-CTA work lists plus, when split, the row replication and merge
// maps (int32 arrays, laid out in the int workspace by the plan).
struct Schedule {
  int ctas = 0;
  int chunk_pages = 0;  // 0: no split (the kernel reads q and writes the output directly)
  int rep_rows = 0;     // rows of the replicated q / partial outputs when split
  std::vector<std::vector<Work>> per_cta;
  std::vector<int32_t> gather_src;                              // [rep_rows]
  std::vector<int32_t> merge_first, merge_count, merge_stride;  // [T] each
};

// PlanInfo layout (int64 fields).
enum Field : int {
  kSplit,
  kCtas,
  kWorks,
  kRepRows,
  kRows,
  kHeads,
  kHeadDim,
  kOffQoTile,
  kOffQoIndptr,
  kOffKvIndptr,
  kOffQoLen,
  kOffKvLen,
  kOffHead,
  kOffBatch,
  kOffWorkIndptr,
  kOffGather,
  kOffFirst,
  kOffCount,
  kOffStride,
  kNumFields
};

std::vector<Entry> entries_of(const PlanQuery& q) {
  if (q.kv_last_page_len_h == nullptr)
    throw std::runtime_error("sm90 prefill plan: kv_last_page_len_h is required");
  std::vector<Entry> out(size_t(q.batch_size));
  for (int b = 0; b < q.batch_size; ++b) {
    Entry& e = out[size_t(b)];
    e.q_begin = q.qo_indptr_h[b];
    e.q_len = q.qo_indptr_h[b + 1] - q.qo_indptr_h[b];
    e.page_begin = q.kv_indptr_h[b];
    e.pages = q.kv_indptr_h[b + 1] - q.kv_indptr_h[b];
    e.kv_len = e.pages == 0 ? 0 : (e.pages - 1) * q.page_size + q.kv_last_page_len_h[b];
  }
  return out;
}

// Number of KV chunks of an entry (at least one, so that empty entries still get their zero
// output and -inf LSE from the kernel).
int num_chunks(const Entry& e, int chunk_pages) {
  if (chunk_pages <= 0 || e.pages == 0) return 1;
  return (e.pages + chunk_pages - 1) / chunk_pages;
}

// Work cost in KV-token units; a query tile's own load and epilogue cost about as much as two
// tile rows of KV (FlashInfer's sm90 cost model uses the same 2 * qo + kv).
int64_t work_cost(int kv_len, int tile) {
  return int64_t(kv_len) + 2 * tile;
}

// All work items for a chunk size (0: unsplit), the replica row of each (entry, chunk) given by
// base rows that the caller lays out.
std::vector<Work> make_works(const PlanQuery& q, const std::vector<Entry>& es, int chunk_pages) {
  const int tile = cta_q(q.head_dim);
  std::vector<Work> works;
  int rep = 0;
  for (int b = 0; b < int(es.size()); ++b) {
    const Entry& e = es[size_t(b)];
    if (e.q_len == 0) continue;
    const int n = num_chunks(e, chunk_pages);
    const int tiles = (e.q_len + tile - 1) / tile;
    for (int c = 0; c < n; ++c) {
      const int page0 = chunk_pages > 0 ? c * chunk_pages : 0;
      const int kv = chunk_pages > 0 && e.pages > 0
                         ? std::min(e.kv_len - page0 * q.page_size, chunk_pages * q.page_size)
                         : e.kv_len;
      const int row0 = chunk_pages > 0 ? rep + c * e.q_len : e.q_begin;
      for (int h = 0; h < q.num_qo_heads; ++h) {
        for (int t = tiles - 1; t >= 0; --t) {
          works.push_back({t, row0, e.page_begin + page0, e.q_len, kv, h, b,
                           e.kv_len == 0 ? 1 : work_cost(kv, tile)});
        }
      }
    }
    if (chunk_pages > 0) rep += n * e.q_len;
  }
  return works;
}

// Longest-processing-time-first assignment to `ctas` persistent CTAs; returns the makespan and,
// when `out` is given, the per-CTA lists.
int64_t assign(std::vector<Work> works, int ctas, std::vector<std::vector<Work>>* out) {
  std::stable_sort(works.begin(), works.end(),
                   [](const Work& a, const Work& b) { return a.cost > b.cost; });
  using Load = std::pair<int64_t, int>;  // (load, cta)
  std::priority_queue<Load, std::vector<Load>, std::greater<Load>> heap;
  for (int i = 0; i < ctas; ++i) heap.push({0, i});
  if (out) out->assign(size_t(ctas), {});
  int64_t makespan = 0;
  for (const Work& w : works) {
    auto [load, cta] = heap.top();
    heap.pop();
    load += w.cost;
    makespan = std::max(makespan, load);
    heap.push({load, cta});
    if (out) (*out)[size_t(cta)].push_back(w);
  }
  return makespan;
}

// The split's fixed price in KV-token units of one CTA's time: the row gather and the merge
// move the replicated rows about four times, plus two extra launches (~3 us each). One KV token
// of a work is CTA_Q * head_dim * 4 flops at ~4.5 TFLOP/s per SM (H100 sm90 kernel).
int64_t split_penalty(const PlanQuery& q, int64_t rep_rows) {
  const double unit_s = double(cta_q(q.head_dim)) * q.head_dim * 4.0 / 4.5e12;
  const double bytes = 4.0 * double(rep_rows) * q.num_qo_heads * q.head_dim * 2.0;
  return int64_t((bytes / 3.0e12 + 6e-6) / unit_s);
}

int64_t rep_rows_of(const std::vector<Entry>& es, int chunk_pages) {
  int64_t r = 0;
  for (const Entry& e : es) r += int64_t(num_chunks(e, chunk_pages)) * e.q_len;
  return r;
}

// Chooses the chunk size (0 = unsplit) with the smallest estimated time. Splitting is only
// considered when the unsplit level leaves SMs idle or unevenly loaded; candidates divide the
// longest entry into k page-aligned chunks.
int choose_chunk_pages(const PlanQuery& q, const std::vector<Entry>& es, int ctas) {
  if (const char* env = std::getenv("NC_SM90_CHUNK_PAGES")) return std::max(0, std::atoi(env));
  const int tile = cta_q(q.head_dim);
  int max_pages = 0;
  int64_t unsplit_works = 0;
  for (const Entry& e : es) {
    if (e.q_len == 0) continue;
    max_pages = std::max(max_pages, e.pages);
    unsplit_works += int64_t((e.q_len + tile - 1) / tile) * q.num_qo_heads;
  }
  if (max_pages <= 1 || unsplit_works >= 4 * int64_t(ctas)) return 0;
  int64_t best = assign(make_works(q, es, 0), ctas, nullptr);
  int best_chunk = 0;
  const int max_k = int(std::min<int64_t>({64, max_pages, 8 * int64_t(ctas) / unsplit_works + 1}));
  int prev = -1;
  for (int k = 2; k <= max_k; ++k) {
    const int chunk = (max_pages + k - 1) / k;
    if (chunk == prev) continue;
    prev = chunk;
    const int64_t rep = rep_rows_of(es, chunk);
    if (rep > (int64_t(1) << 24)) break;
    const int64_t t = assign(make_works(q, es, chunk), ctas, nullptr) + split_penalty(q, rep);
    if (t < best) best = t, best_chunk = chunk;
  }
  return best_chunk;
}

Schedule make_schedule(const PlanQuery& q) {
  Schedule s;
  s.ctas = sm_count();
  const std::vector<Entry> es = entries_of(q);
  s.chunk_pages = choose_chunk_pages(q, es, s.ctas);
  assign(make_works(q, es, s.chunk_pages), s.ctas, &s.per_cta);
  if (s.chunk_pages == 0) return s;
  s.rep_rows = int(rep_rows_of(es, s.chunk_pages));
  s.gather_src.resize(size_t(s.rep_rows));
  s.merge_first.assign(size_t(q.total_rows), 0);
  s.merge_count.assign(size_t(q.total_rows), 0);
  s.merge_stride.assign(size_t(q.total_rows), 1);
  int rep = 0;
  for (const Entry& e : es) {
    const int n = num_chunks(e, s.chunk_pages);
    for (int i = 0; i < e.q_len; ++i) {
      for (int c = 0; c < n; ++c) s.gather_src[size_t(rep + c * e.q_len + i)] = e.q_begin + i;
      s.merge_first[size_t(e.q_begin + i)] = rep + i;
      s.merge_count[size_t(e.q_begin + i)] = n;
      s.merge_stride[size_t(e.q_begin + i)] = e.q_len;
    }
    rep += n * e.q_len;
  }
  return s;
}

size_t align16(size_t n) {
  return (n + 15) / 16 * 16;
}

size_t align256(size_t n) {
  return (n + 255) / 256 * 256;
}

// Lays the schedule's arrays out (16-byte aligned offsets); fills `info` and, when `dst` is
// given, writes the arrays there. Returns the bytes used.
size_t layout_schedule(const Schedule& s, const PlanQuery& q, PlanInfo* info, char* dst) {
  size_t works = 0;
  for (const auto& l : s.per_cta) works += l.size();
  PlanInfo& in = *info;
  in.assign(kNumFields, 0);
  in[kSplit] = s.chunk_pages > 0;
  in[kCtas] = s.ctas;
  in[kWorks] = int64_t(works);
  in[kRepRows] = s.rep_rows;
  in[kRows] = q.total_rows;
  in[kHeads] = q.num_qo_heads;
  in[kHeadDim] = q.head_dim;
  size_t off = 0;
  auto put = [&](Field f, size_t count) {
    in[f] = int64_t(off);
    off = align16(off + std::max<size_t>(count, 1) * 4);
  };
  for (Field f :
       {kOffQoTile, kOffQoIndptr, kOffKvIndptr, kOffQoLen, kOffKvLen, kOffHead, kOffBatch})
    put(f, works);
  put(kOffWorkIndptr, size_t(s.ctas) + 1);
  const bool split = s.chunk_pages > 0;
  put(kOffGather, split ? size_t(s.rep_rows) : 0);
  for (Field f : {kOffFirst, kOffCount, kOffStride}) put(f, split ? size_t(q.total_rows) : 0);
  if (dst == nullptr) return off;

  auto arr = [&](Field f) { return reinterpret_cast<int32_t*>(dst + in[f]); };
  size_t i = 0;
  int32_t* work_indptr = arr(kOffWorkIndptr);
  work_indptr[0] = 0;
  for (size_t c = 0; c < s.per_cta.size(); ++c) {
    for (const Work& w : s.per_cta[c]) {
      arr(kOffQoTile)[i] = w.qo_tile;
      arr(kOffQoIndptr)[i] = w.qo_indptr;
      arr(kOffKvIndptr)[i] = w.kv_indptr;
      arr(kOffQoLen)[i] = w.qo_len;
      arr(kOffKvLen)[i] = w.kv_len;
      arr(kOffHead)[i] = w.head;
      arr(kOffBatch)[i] = w.batch;
      ++i;
    }
    work_indptr[c + 1] = int32_t(i);
  }
  if (split) {
    std::memcpy(arr(kOffGather), s.gather_src.data(), s.gather_src.size() * 4);
    std::memcpy(arr(kOffFirst), s.merge_first.data(), s.merge_first.size() * 4);
    std::memcpy(arr(kOffCount), s.merge_count.data(), s.merge_count.size() * 4);
    std::memcpy(arr(kOffStride), s.merge_stride.data(), s.merge_stride.size() * 4);
  }
  return off;
}

// Float-workspace regions of a split run: replicated q, partial outputs, partial LSE.
struct SplitBuffers {
  size_t q_off = 0, o_off = 0, lse_off = 0, bytes = 0;
};

SplitBuffers split_buffers(int64_t rep_rows, int64_t heads, int64_t head_dim) {
  SplitBuffers b;
  const size_t rows_bytes = align256(size_t(rep_rows * heads * head_dim * 2));
  b.q_off = 0;
  b.o_off = rows_bytes;
  b.lse_off = 2 * rows_bytes;
  b.bytes = b.lse_off + align256(size_t(rep_rows * heads * 4));
  return b;
}

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

bool sm90_prefill_available(int num_qo_heads, int num_kv_heads, int head_dim) {
  if (head_dim != 128 && head_dim != 64) return false;
  if (num_kv_heads <= 0 || num_qo_heads % num_kv_heads != 0) return false;
  return device_is_sm90();
}

void sm90_prefill_workspace_size(const PlanQuery& q, size_t* float_bytes, size_t* int_bytes) {
  const Schedule s = make_schedule(q);
  PlanInfo info;
  *int_bytes = layout_schedule(s, q, &info, nullptr);
  *float_bytes =
      s.chunk_pages > 0 ? split_buffers(s.rep_rows, q.num_qo_heads, q.head_dim).bytes : 0;
}

PlanInfo sm90_prefill_plan(const PlanQuery& q, const PlanWorkspace& ws, cudaStream_t stream) {
  const Schedule s = make_schedule(q);
  PlanInfo info;
  const size_t bytes = layout_schedule(s, q, &info, nullptr);
  if (bytes > ws.int_bytes) throw std::runtime_error("sm90 prefill plan: int workspace too small");
  if (s.chunk_pages > 0 &&
      split_buffers(s.rep_rows, q.num_qo_heads, q.head_dim).bytes > ws.float_bytes)
    throw std::runtime_error("sm90 prefill plan: float workspace too small");
  layout_schedule(s, q, &info, static_cast<char*>(ws.int_pinned));
  check_cuda(cudaMemcpyAsync(ws.int_ws, ws.int_pinned, bytes, cudaMemcpyHostToDevice, stream),
             "sm90 prefill plan copy");
  return info;
}

void sm90_prefill_run(const PlanInfo& info, const PlanWorkspace& ws, const PagedKV& kv,
                      const AttnIO& io, cudaStream_t stream) {
  if (info.size() != kNumFields) throw std::runtime_error("sm90 prefill run: not an sm90 plan");
  const int D = kv.head_dim, Hq = io.num_qo_heads, Hk = kv.num_kv_heads;
  if (info[kHeadDim] != D || info[kHeads] != Hq)
    throw std::runtime_error("sm90 prefill run: plan was made for other heads");
  if (info[kCtas] != sm_count())
    throw std::runtime_error("sm90 prefill run: plan was made for another SM count");
  const bool split = info[kSplit] != 0;
  const int64_t rows = info[kRows], rep_rows = info[kRepRows];
  auto int_arr = [&](Field f) {
    return reinterpret_cast<int32_t*>(static_cast<char*>(ws.int_ws) + info[f]);
  };
  const SplitBuffers sb = split_buffers(rep_rows, Hq, D);
  char* fws = static_cast<char*>(ws.float_ws);
  if (split) {
    gather_rows(io.q, int_arr(kOffGather), fws + sb.q_off, rep_rows, rows, int64_t(Hq) * D * 2,
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
  p.qo_tile_indices = int_arr(kOffQoTile);
  p.qo_indptr = int_arr(kOffQoIndptr);
  p.kv_indptr = int_arr(kOffKvIndptr);
  p.kv_indices = kv.indices;
  p.qo_lens = int_arr(kOffQoLen);
  p.kv_lens = int_arr(kOffKvLen);
  p.head_indices = int_arr(kOffHead);
  p.work_indptr = int_arr(kOffWorkIndptr);
  p.batch_indices = int_arr(kOffBatch);
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
          <<<blocks, threads, 0, stream>>>(po, pl, int_arr(kOffFirst), int_arr(kOffCount),
                                           int_arr(kOffStride), out, io.lse, int(rows), Hq);
    else
      merge_partials_kernel<128>
          <<<blocks, threads, 0, stream>>>(po, pl, int_arr(kOffFirst), int_arr(kOffCount),
                                           int_arr(kOffStride), out, io.lse, int(rows), Hq);
    check_launch("sm90 prefill merge");
  }
}

}  // namespace nc::cuda

// nc_gpu_bench sparse: query-aware sparse decode attention (Quest, issue #13) against dense decode
// attention, one layer of 32 q / 8 kv heads, head_dim 128, page 16 (NC_SPARSE_PAGE: another size,
// e.g. 8, the page at which per-request selection met #13's passkey check), NHD, bf16, pages
// shuffled over one pool of 64 x 128k tokens (34 GB and its bounds, allocated once). Per case
// (context 32k and 128k, batch 16 and 64, budget 2048 and 4096 tokens, 1 sink page, a 128-token
// window):
//   sparse    sparse_attention: page scores + selection + attention over the kept pages (the
//             step's k/v append included, as in dense); the bounds update is not in it
//   dense     attention over every page
//   floor     (K/V bytes of the kept tokens + bytes of the candidates' bounds) / the
//             device-to-device copy rate measured in the same run; fraction = floor / sparse
//   kept-only plain attention over a step of the selected shape (sparse minus it: the scores
//             and the selection)
// and the update_page_bounds time of one decode step (one page per request). Then the sparse
// step's two selection kernels timed alone (sparse_kernels.h, called directly on a stream of
// their own with the plan's inputs rebuilt here): the page scores against the bounds' bytes at
// the copy rate, and the selection. Also written to $OUT/sparse.csv and $OUT/sparse_parts.csv
// when OUT is set.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include <cuda_runtime_api.h>

#include "backend/cuda/sparse_kernels.h"
#include "bench_util.h"

namespace nc {
namespace {

constexpr int kHq = 32, kHk = 8, kD = 128;
int page_size_from_env() {
  const char* v = std::getenv("NC_SPARSE_PAGE");
  const int ps = v != nullptr ? std::atoi(v) : 16;
  return ps >= 1 && ps <= 256 ? ps : 16;
}
const int kPs = page_size_from_env();
constexpr int kMaxCtx = 131072, kMaxBatch = 64;
constexpr int kSinkPages = 1, kWindow = 128;

// An entry's candidate pages [c0, c1) (cuda_sparse.cc's rule): all but the sinks, the window's
// pages and the last; the score kernel reads only their bounds.
struct Candidates {
  int c0 = 0, c1 = 0;
};

Candidates candidates(int n, int kv_len) {
  const int c0 = std::min(kSinkPages, n);
  return {c0, std::max(c0, std::min(std::max(0, kv_len - kWindow) / kPs, n - 1))};
}

// Bytes of page bounds the score kernel reads over `own`'s entries (float32 min and max).
double bounds_read_bytes(const PagedKVBatch& own) {
  double bytes = 0;
  for (int b = 0; b < own.batch_size(); ++b) {
    const Candidates c = candidates(own.num_pages(b), own.kv_len(b, kPs));
    bytes += double(c.c1 - c.c0) * 2.0 * kHk * kD * 4;
  }
  return bytes;
}

// The step's shape after selection, as a plain step (the first kept - 1 pages of each entry and
// its last): what the attention part of a sparse step reads, for the breakdown.
AttentionStep kept_shape_step(const AttentionStep& step, const std::vector<int>& kept_pages) {
  const PagedKVBatch& own = step.levels.back();
  AttentionStep out{step.num_tokens, {}};
  PagedKVBatch b;
  for (int e = 0; e < own.batch_size(); ++e) {
    const int n = kept_pages[size_t(e)], first = own.kv_indptr[size_t(e)];
    std::vector<int32_t> pages(own.kv_indices.begin() + first,
                               own.kv_indices.begin() + first + n - 1);
    pages.push_back(own.kv_indices[size_t(own.kv_indptr[size_t(e) + 1] - 1)]);
    b.add(1, pages, (n - 1) * kPs + own.kv_last_page_len[size_t(e)], kPs);
  }
  out.levels = {b};
  return out;
}

// The selection kernels' inputs for `step` as cuda_sparse.cc stages them (every entry sparse).
struct SelectInputs {
  Tensor entries, full_indices, scores, out_indices;
  int max_candidates = 0;
};

SelectInputs select_inputs(Backend& be, const AttentionStep& step,
                           const std::vector<int>& kept_pages) {
  const PagedKVBatch& own = step.levels.back();
  std::vector<int32_t> table;
  int out_off = 0, max_candidates = 0;
  for (int b = 0; b < own.batch_size(); ++b) {
    const int n = own.num_pages(b), kv_len = own.kv_len(b, kPs);
    const auto [c0, c1] = candidates(n, kv_len);
    const int keep = kept_pages[size_t(b)] - c0 - (n - c1);
    std::vector<int32_t> row(cuda::kSparseEntryFields, 0);
    row[cuda::kSeQRow] = b;
    row[cuda::kSeSrcOff] = own.kv_indptr[size_t(b)];
    row[cuda::kSeNumPages] = n;
    row[cuda::kSeCand0] = c0;
    row[cuda::kSeCand1] = c1;
    row[cuda::kSeKeep] = keep;
    row[cuda::kSeOutOff] = out_off;
    table.insert(table.end(), row.begin(), row.end());
    out_off += kept_pages[size_t(b)];
    max_candidates = std::max(max_candidates, c1 - c0);
  }
  SelectInputs in;
  in.entries = be.alloc({own.batch_size(), cuda::kSparseEntryFields}, DType::I32);
  be.copy_from_host(in.entries, table.data());
  in.full_indices = be.alloc({int64_t(own.kv_indices.size())}, DType::I32);
  be.copy_from_host(in.full_indices, own.kv_indices.data());
  in.scores = be.alloc({int64_t(own.kv_indices.size())}, DType::F32);
  in.out_indices = be.alloc({std::max(out_off, 1)}, DType::I32);
  in.max_candidates = max_candidates;
  return in;
}

// Microseconds per call of f(stream), timed with events over `iters` calls after a warm-up.
template <typename F>
double stream_us(F&& f, int iters = 50) {
  cudaStream_t s;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  cudaEvent_t t0, t1;
  cudaEventCreate(&t0);
  cudaEventCreate(&t1);
  for (int i = 0; i < 3; ++i) f(s);
  cudaEventRecord(t0, s);
  for (int i = 0; i < iters; ++i) f(s);
  cudaEventRecord(t1, s);
  cudaEventSynchronize(t1);
  float ms = 0;
  cudaEventElapsedTime(&ms, t0, t1);
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  cudaStreamDestroy(s);
  return 1e3 * double(ms) / iters;
}

Tensor page_slots(Backend& be, const std::vector<int32_t>& pages, int valid) {
  std::vector<int32_t> rows;
  for (int32_t p : pages) rows.insert(rows.end(), {p, valid});
  Tensor t = be.alloc({int64_t(pages.size()), 2}, DType::I32);
  be.copy_from_host(t, rows.data());
  return t;
}

// The page scores and the selection alone, per case of the main table.
void bench_sparse_parts(Backend& be, const std::vector<int32_t>& perm, const Tensor& q,
                        const Tensor& bounds, double copy) {
  const KVCacheShape kv{1, int(bounds.dim(0)), kPs, kHk, kD, KVLayout::NHD};
  const AttentionShape shape{kHq, kHk, kD, 1.0f / std::sqrt(float(kD)), kv};
  std::printf(
      "\n| context | batch | budget | page scores (us) | bounds read (MB) | scores' fraction of "
      "the "
      "copy rate | selection (us) |\n|---|---|---|---|---|---|---|\n");
  std::FILE* csv =
      bench::open_csv("sparse_parts.csv", "context,batch,budget,scores_us,bounds_bytes,select_us");
  for (int ctx : {32768, kMaxCtx})
    for (int batch : {16, kMaxBatch})
      for (int budget : {2048, 4096}) {
        const AttentionStep step = bench::decode_step(batch, ctx, perm, kPs);
        auto plan =
            be.plan_sparse_attention(step, shape, PageSelection{budget, kSinkPages, kWindow});
        SelectInputs in = select_inputs(be, step, cuda_sparse_entry_pages(*plan));
        cuda_synchronize(be);
        cuda::SparseSelectArgs a;
        a.q = q.data();
        a.bounds = static_cast<const float*>(bounds.data());
        a.entries = static_cast<const int32_t*>(in.entries.data());
        a.full_indices = static_cast<const int32_t*>(in.full_indices.data());
        a.scores = static_cast<float*>(in.scores.data());
        a.out_indices = static_cast<int32_t*>(in.out_indices.data());
        a.num_entries = batch;
        a.max_candidates = in.max_candidates;
        a.num_qo_heads = kHq;
        a.num_kv_heads = kHk;
        a.head_dim = kD;
        const double scores = stream_us([&](cudaStream_t s) { cuda::sparse_page_scores(a, s); });
        const double select = stream_us([&](cudaStream_t s) { cuda::sparse_select_pages(a, s); });
        const double bound_bytes = bounds_read_bytes(step.levels.back());
        std::printf("| %d | %d | %d | %.1f | %.1f | %.2f | %.1f |\n", ctx, batch, budget, scores,
                    bound_bytes / 1e6, bound_bytes / (copy * 1e12) / (scores * 1e-6), select);
        std::fflush(stdout);
        if (csv)
          std::fprintf(csv, "%d,%d,%d,%.3f,%.0f,%.3f\n", ctx, batch, budget, scores, bound_bytes,
                       select);
      }
  if (csv) std::fclose(csv);
}

// One pool of kMaxBatch x kMaxCtx tokens of random K/V with its bounds, shuffled page order, and
// random q/k/v rows for kMaxBatch requests.
struct SparseRig {
  std::unique_ptr<Backend> be;
  double copy = 0;  // TB/s, measured in this process
  Tensor pages, bounds, q, k, v, out;
  std::vector<int32_t> perm;
};

SparseRig make_sparse_rig() {
  SparseRig r;
  r.be = make_cuda_backend(0);
  Backend& be = *r.be;
  r.copy = bench::copy_tbs(be);
  const int num_pages = kMaxBatch * (kMaxCtx / kPs);
  const KVCacheShape kv{1, num_pages, kPs, kHk, kD, KVLayout::NHD};
  r.pages = be.alloc({num_pages, 2, kPs, kHk, kD}, DType::BF16);
  be.fill_uniform(r.pages, 1, -1.0f, 1.0f);
  r.bounds = be.alloc({num_pages, 2, kHk, kD}, DType::F32);
  std::vector<int32_t> all(static_cast<size_t>(num_pages));
  std::iota(all.begin(), all.end(), 0);
  be.update_page_bounds(r.pages, kv, page_slots(be, all, kPs), r.bounds);
  std::mt19937 rng(13);
  r.perm = all;
  std::shuffle(r.perm.begin(), r.perm.end(), rng);
  r.q = be.upload(bench::random_host({kMaxBatch, kHq * kD}, rng));
  r.k = be.upload(bench::random_host({kMaxBatch, kHk * kD}, rng));
  r.v = be.upload(bench::random_host({kMaxBatch, kHk * kD}, rng));
  r.out = be.alloc({kMaxBatch, kHq * kD}, DType::BF16);
  cuda_synchronize(be);
  return r;
}

}  // namespace

void bench_sparse_parts() {
  SparseRig r = make_sparse_rig();
  bench_sparse_parts(*r.be, r.perm, r.q, r.bounds, r.copy);
}

void bench_sparse() {
  SparseRig r = make_sparse_rig();
  auto& be = r.be;
  const double copy = r.copy;
  const Tensor &pages = r.pages, &bounds = r.bounds, &q = r.q, &k = r.k, &v = r.v, &out = r.out;
  const std::vector<int32_t>& perm = r.perm;
  const KVCacheShape kv{1, int(pages.dim(0)), kPs, kHk, kD, KVLayout::NHD};
  const AttentionShape shape{kHq, kHk, kD, 1.0f / std::sqrt(float(kD)), kv};

  std::printf(
      "\n## Sparse decode attention (Quest): %d q / %d kv heads, head_dim %d, page %d, NHD, "
      "bf16, %d sink page, %d-token window; copy %.3f TB/s (bytes read + written)\n",
      kHq, kHk, kD, kPs, kSinkPages, kWindow, copy);
  std::printf(
      "| context | batch | budget | sparse (us) | dense (us) | speedup | kept K/V (MB) | bounds "
      "read (MB) | floor (us) | fraction of floor | attention over the kept pages alone (us) "
      "|\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::FILE* csv = bench::open_csv(
      "sparse.csv",
      "context,batch,budget,sparse_us,dense_us,kept_kv_bytes,bounds_bytes,floor_us,kept_attn_us");
  const double token_bytes = 2.0 * kHk * kD * 2;
  for (int ctx : {32768, kMaxCtx})
    for (int batch : {16, kMaxBatch}) {
      const AttentionStep step = bench::decode_step(batch, ctx, perm, kPs);
      const Tensor qb = q.slice(0, batch), kb = k.slice(0, batch), vb = v.slice(0, batch);
      const Tensor ob = out.slice(0, batch);
      auto dense = be->plan_attention(step, shape);
      const double t_dense =
          bench::auto_seconds_per_call(*be, [&] { be->attention(*dense, qb, kb, vb, pages, ob); });
      for (int budget : {2048, 4096}) {  // (the parts' table below repeats this loop)
        const PageSelection sel{budget, kSinkPages, kWindow};
        auto sparse = be->plan_sparse_attention(step, shape, sel);
        const double t = bench::auto_seconds_per_call(
            *be, [&] { be->sparse_attention(*sparse, qb, kb, vb, pages, bounds, ob); });
        const PagedKVBatch& own = step.levels.back();
        const double bound_bytes = bounds_read_bytes(own);
        double kept = 0;
        const std::vector<int> kept_pages = cuda_sparse_entry_pages(*sparse);
        for (int b = 0; b < batch; ++b)
          kept += (double(kept_pages[size_t(b)] - 1) * kPs + own.kv_last_page_len[size_t(b)]) *
                  token_bytes;
        const double floor_s = (kept + bound_bytes) / (copy * 1e12);
        auto kept_plan = be->plan_attention(kept_shape_step(step, kept_pages), shape);
        const double t_kept = bench::auto_seconds_per_call(
            *be, [&] { be->attention(*kept_plan, qb, kb, vb, pages, ob); });
        std::printf("| %d | %d | %d | %.1f | %.1f | %.2fx | %.1f | %.1f | %.1f | %.2f | %.1f |\n",
                    ctx, batch, budget, t * 1e6, t_dense * 1e6, t_dense / t, kept / 1e6,
                    bound_bytes / 1e6, floor_s * 1e6, floor_s / t, t_kept * 1e6);
        std::fflush(stdout);
        if (csv)
          std::fprintf(csv, "%d,%d,%d,%.3f,%.3f,%.0f,%.0f,%.3f,%.3f\n", ctx, batch, budget, t * 1e6,
                       t_dense * 1e6, kept, bound_bytes, floor_s * 1e6, t_kept * 1e6);
      }
    }
  if (csv) std::fclose(csv);

  bench_sparse_parts(*be, perm, q, bounds, copy);

  std::printf("\n| update_page_bounds, one decode step | batch | time (us) |\n|---|---|---|\n");
  for (int batch : {16, kMaxBatch}) {
    std::vector<int32_t> last(perm.begin(), perm.begin() + batch);
    Tensor slots = page_slots(*be, last, kPs / 2);
    const double t = bench::auto_seconds_per_call(
        *be, [&] { be->update_page_bounds(pages, kv, slots, bounds); });
    std::printf("| | %d | %.1f |\n", batch, t * 1e6);
  }
}

}  // namespace nc

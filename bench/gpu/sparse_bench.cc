// nc_gpu_bench sparse: query-aware sparse decode attention (Quest, issue #13) against dense decode
// attention, one layer of 32 q / 8 kv heads, head_dim 128, page 16, NHD, bf16, pages shuffled
// over one pool of 64 x 128k tokens (34 GB, allocated once). Per case (context 32k and 128k,
// batch 16 and 64, budget 2048 and 4096 tokens, 1 sink page, a 128-token window):
//   sparse    sparse_attention: page scores + selection + attention over the kept pages (the
//             step's k/v append included, as in dense); the bounds update is not in it
//   dense     attention over every page
//   floor     (K/V bytes of the kept tokens + bytes of the candidates' bounds) / the
//             device-to-device copy rate measured in the same run; fraction = floor / sparse
//   kept-only plain attention over a step of the selected shape (sparse minus it: the scores
//             and the selection)
// and the update_page_bounds time of one decode step (one page per request). Also written to
// $OUT/sparse.csv when OUT is set.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "bench_util.h"

namespace nc {
namespace {

constexpr int kHq = 32, kHk = 8, kD = 128, kPs = 16;
constexpr int kMaxCtx = 131072, kMaxBatch = 64;
constexpr int kSinkPages = 1, kWindow = 128;

// Pages whose bounds the score kernel reads: all but the sinks, the window's pages and the last.
int64_t candidate_pages(int n, int kv_len) {
  const int c0 = std::min(kSinkPages, n);
  const int c1 = std::max(c0, std::min(std::max(0, kv_len - kWindow) / kPs, n - 1));
  return c1 - c0;
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

Tensor page_slots(Backend& be, const std::vector<int32_t>& pages, int valid) {
  std::vector<int32_t> rows;
  for (int32_t p : pages) rows.insert(rows.end(), {p, valid});
  Tensor t = be.alloc({int64_t(pages.size()), 2}, DType::I32);
  be.copy_from_host(t, rows.data());
  return t;
}

}  // namespace

void bench_sparse() {
  auto be = make_cuda_backend(0);
  const double copy = bench::copy_tbs(*be);
  const int num_pages = kMaxBatch * (kMaxCtx / kPs);
  const KVCacheShape kv{1, num_pages, kPs, kHk, kD, KVLayout::NHD};
  const AttentionShape shape{kHq, kHk, kD, 1.0f / std::sqrt(float(kD)), kv};
  Tensor pages = be->alloc({num_pages, 2, kPs, kHk, kD}, DType::BF16);
  be->fill_uniform(pages, 1, -1.0f, 1.0f);
  Tensor bounds = be->alloc({num_pages, 2, kHk, kD}, DType::F32);
  std::vector<int32_t> all(static_cast<size_t>(num_pages));
  std::iota(all.begin(), all.end(), 0);
  be->update_page_bounds(pages, kv, page_slots(*be, all, kPs), bounds);
  std::mt19937 rng(13);
  std::vector<int32_t> perm = all;
  std::shuffle(perm.begin(), perm.end(), rng);
  Tensor q = be->upload(bench::random_host({kMaxBatch, kHq * kD}, rng));
  Tensor k = be->upload(bench::random_host({kMaxBatch, kHk * kD}, rng));
  Tensor v = be->upload(bench::random_host({kMaxBatch, kHk * kD}, rng));
  Tensor out = be->alloc({kMaxBatch, kHq * kD}, DType::BF16);
  cuda_synchronize(*be);

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
  const double token_bytes = 2.0 * kHk * kD * 2, page_bound_bytes = 2.0 * kHk * kD * 4;
  for (int ctx : {32768, kMaxCtx})
    for (int batch : {16, kMaxBatch}) {
      const AttentionStep step = bench::decode_step(batch, ctx, perm, kPs);
      const Tensor qb = q.slice(0, batch), kb = k.slice(0, batch), vb = v.slice(0, batch);
      const Tensor ob = out.slice(0, batch);
      auto dense = be->plan_attention(step, shape);
      const double t_dense =
          bench::auto_seconds_per_call(*be, [&] { be->attention(*dense, qb, kb, vb, pages, ob); });
      for (int budget : {2048, 4096}) {
        const PageSelection sel{budget, kSinkPages, kWindow};
        auto sparse = be->plan_sparse_attention(step, shape, sel);
        const double t = bench::auto_seconds_per_call(
            *be, [&] { be->sparse_attention(*sparse, qb, kb, vb, pages, bounds, ob); });
        const PagedKVBatch& own = step.levels.back();
        double kept = 0, bound_bytes = 0;
        const std::vector<int> kept_pages = cuda_sparse_entry_pages(*sparse);
        for (int b = 0; b < batch; ++b) {
          kept += (double(kept_pages[size_t(b)] - 1) * kPs + own.kv_last_page_len[size_t(b)]) *
                  token_bytes;
          bound_bytes +=
              double(candidate_pages(own.num_pages(b), own.kv_len(b, kPs))) * page_bound_bytes;
        }
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

#include "backend/sm90_schedule.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <queue>
#include <utility>

#include "core/error.h"

namespace nc {
namespace {

// An entry of the level as the planner sees it.
struct Entry {
  int q_begin, q_len, page_begin, pages, kv_len;
};

std::vector<Entry> entries_of(const Sm90Level& l) {
  if (l.kv_last_page_len == nullptr) fail("sm90 prefill plan: kv_last_page_len is required");
  std::vector<Entry> out(size_t(l.batch_size));
  for (int b = 0; b < l.batch_size; ++b) {
    Entry& e = out[size_t(b)];
    e.q_begin = l.qo_indptr[b];
    e.q_len = l.qo_indptr[b + 1] - l.qo_indptr[b];
    e.page_begin = l.kv_indptr[b];
    e.pages = l.kv_indptr[b + 1] - l.kv_indptr[b];
    e.kv_len = e.pages == 0 ? 0 : (e.pages - 1) * l.page_size + l.kv_last_page_len[b];
  }
  return out;
}

// Number of KV chunks of an entry (at least one, so that empty entries still get their zero
// output and -inf LSE from the kernel).
int num_chunks(const Entry& e, int chunk_pages) {
  if (chunk_pages <= 0 || e.pages == 0) return 1;
  return (e.pages + chunk_pages - 1) / chunk_pages;
}

int64_t work_cost(int kv_len, int tile) {
  return int64_t(kv_len) + 2 * tile;
}

// All work items for a chunk size (0: unsplit). A split entry's chunk c reads replica rows
// [rep + c * q_len, rep + (c + 1) * q_len), the entries' replicas laid out in entry order.
std::vector<Sm90Work> make_works(const Sm90Level& l, const std::vector<Entry>& es,
                                 int chunk_pages) {
  const int tile = sm90_query_tile(l.head_dim);
  std::vector<Sm90Work> works;
  int rep = 0;
  for (int b = 0; b < int(es.size()); ++b) {
    const Entry& e = es[size_t(b)];
    if (e.q_len == 0) continue;
    const int n = num_chunks(e, chunk_pages);
    const int tiles = (e.q_len + tile - 1) / tile;
    for (int c = 0; c < n; ++c) {
      const int page0 = chunk_pages > 0 ? c * chunk_pages : 0;
      const int kv = chunk_pages > 0 && e.pages > 0
                         ? std::min(e.kv_len - page0 * l.page_size, chunk_pages * l.page_size)
                         : e.kv_len;
      const int row0 = chunk_pages > 0 ? rep + c * e.q_len : e.q_begin;
      for (int h = 0; h < l.num_qo_heads; ++h) {
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
int64_t assign(std::vector<Sm90Work> works, int ctas, std::vector<std::vector<Sm90Work>>* out) {
  std::stable_sort(works.begin(), works.end(),
                   [](const Sm90Work& a, const Sm90Work& b) { return a.cost > b.cost; });
  using Load = std::pair<int64_t, int>;  // (load, cta)
  std::priority_queue<Load, std::vector<Load>, std::greater<Load>> heap;
  for (int i = 0; i < ctas; ++i) heap.push({0, i});
  if (out) out->assign(size_t(ctas), {});
  int64_t makespan = 0;
  for (const Sm90Work& w : works) {
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
int64_t split_penalty(const Sm90Level& l, int64_t rep_rows) {
  const double unit_s = double(sm90_query_tile(l.head_dim)) * l.head_dim * 4.0 / 4.5e12;
  const double bytes = 4.0 * double(rep_rows) * l.num_qo_heads * l.head_dim * 2.0;
  return int64_t((bytes / 3.0e12 + 6e-6) / unit_s);
}

int64_t rep_rows_of(const std::vector<Entry>& es, int chunk_pages) {
  int64_t r = 0;
  for (const Entry& e : es) r += int64_t(num_chunks(e, chunk_pages)) * e.q_len;
  return r;
}

// The chunk size (0 = unsplit) with the smallest estimated time. Splitting is only considered
// when the unsplit level leaves SMs idle or unevenly loaded; candidates divide the longest entry
// into k page-aligned chunks.
int choose_chunk_pages(const Sm90Level& l, const std::vector<Entry>& es, int ctas) {
  const int tile = sm90_query_tile(l.head_dim);
  int max_pages = 0;
  int64_t unsplit_works = 0;
  for (const Entry& e : es) {
    if (e.q_len == 0) continue;
    max_pages = std::max(max_pages, e.pages);
    unsplit_works += int64_t((e.q_len + tile - 1) / tile) * l.num_qo_heads;
  }
  if (max_pages <= 1 || unsplit_works >= 4 * int64_t(ctas)) return 0;
  int64_t best = assign(make_works(l, es, 0), ctas, nullptr);
  int best_chunk = 0;
  const int max_k = int(std::min<int64_t>({64, max_pages, 8 * int64_t(ctas) / unsplit_works + 1}));
  int prev = -1;
  for (int k = 2; k <= max_k; ++k) {
    const int chunk = (max_pages + k - 1) / k;
    if (chunk == prev) continue;
    prev = chunk;
    const int64_t rep = rep_rows_of(es, chunk);
    if (rep > (int64_t(1) << 24)) break;
    const int64_t t = assign(make_works(l, es, chunk), ctas, nullptr) + split_penalty(l, rep);
    if (t < best) best = t, best_chunk = chunk;
  }
  return best_chunk;
}

void fill_row_maps(const std::vector<Entry>& es, int total_rows, Sm90Schedule* s) {
  s->rep_rows = int(rep_rows_of(es, s->chunk_pages));
  s->gather_src.resize(size_t(s->rep_rows));
  s->merge_first.assign(size_t(total_rows), 0);
  s->merge_count.assign(size_t(total_rows), 0);
  s->merge_stride.assign(size_t(total_rows), 1);
  int rep = 0;
  for (const Entry& e : es) {
    const int n = num_chunks(e, s->chunk_pages);
    for (int i = 0; i < e.q_len; ++i) {
      for (int c = 0; c < n; ++c) s->gather_src[size_t(rep + c * e.q_len + i)] = e.q_begin + i;
      s->merge_first[size_t(e.q_begin + i)] = rep + i;
      s->merge_count[size_t(e.q_begin + i)] = n;
      s->merge_stride[size_t(e.q_begin + i)] = e.q_len;
    }
    rep += n * e.q_len;
  }
}

size_t align16(size_t n) {
  return (n + 15) / 16 * 16;
}

}  // namespace

int sm90_query_tile(int head_dim) {
  return head_dim == 64 ? 192 : 128;
}

Sm90Schedule make_sm90_schedule(const Sm90Level& level, int ctas, int chunk_pages) {
  NC_CHECK(ctas > 0, "sm90 prefill plan: {} CTAs", ctas);
  Sm90Schedule s;
  s.ctas = ctas;
  const std::vector<Entry> es = entries_of(level);
  s.chunk_pages = chunk_pages >= 0 ? chunk_pages : choose_chunk_pages(level, es, ctas);
  assign(make_works(level, es, s.chunk_pages), ctas, &s.per_cta);
  if (s.chunk_pages > 0) fill_row_maps(es, level.total_rows, &s);
  return s;
}

size_t layout_sm90_schedule(const Sm90Schedule& s, const Sm90Level& level,
                            std::vector<int64_t>* info, char* dst) {
  size_t works = 0;
  for (const auto& l : s.per_cta) works += l.size();
  std::vector<int64_t>& in = *info;
  in.assign(kSm90NumFields, 0);
  in[kSm90Split] = s.chunk_pages > 0;
  in[kSm90Ctas] = s.ctas;
  in[kSm90Works] = int64_t(works);
  in[kSm90RepRows] = s.rep_rows;
  in[kSm90Rows] = level.total_rows;
  in[kSm90Heads] = level.num_qo_heads;
  in[kSm90HeadDim] = level.head_dim;
  size_t off = 0;
  auto put = [&](Sm90PlanField f, size_t count) {
    in[f] = int64_t(off);
    off = align16(off + std::max<size_t>(count, 1) * 4);
  };
  for (Sm90PlanField f : {kSm90OffQoTile, kSm90OffQoIndptr, kSm90OffKvIndptr, kSm90OffQoLen,
                          kSm90OffKvLen, kSm90OffHead, kSm90OffBatch})
    put(f, works);
  put(kSm90OffWorkIndptr, size_t(s.ctas) + 1);
  const bool split = s.chunk_pages > 0;
  put(kSm90OffGather, split ? size_t(s.rep_rows) : 0);
  for (Sm90PlanField f : {kSm90OffFirst, kSm90OffCount, kSm90OffStride})
    put(f, split ? size_t(level.total_rows) : 0);
  if (dst == nullptr) return off;

  auto arr = [&](Sm90PlanField f) { return reinterpret_cast<int32_t*>(dst + in[f]); };
  size_t i = 0;
  int32_t* work_indptr = arr(kSm90OffWorkIndptr);
  work_indptr[0] = 0;
  for (size_t c = 0; c < s.per_cta.size(); ++c) {
    for (const Sm90Work& w : s.per_cta[c]) {
      arr(kSm90OffQoTile)[i] = w.qo_tile;
      arr(kSm90OffQoIndptr)[i] = w.qo_indptr;
      arr(kSm90OffKvIndptr)[i] = w.kv_indptr;
      arr(kSm90OffQoLen)[i] = w.qo_len;
      arr(kSm90OffKvLen)[i] = w.kv_len;
      arr(kSm90OffHead)[i] = w.head;
      arr(kSm90OffBatch)[i] = w.batch;
      ++i;
    }
    work_indptr[c + 1] = int32_t(i);
  }
  if (split) {
    std::memcpy(arr(kSm90OffGather), s.gather_src.data(), s.gather_src.size() * 4);
    std::memcpy(arr(kSm90OffFirst), s.merge_first.data(), s.merge_first.size() * 4);
    std::memcpy(arr(kSm90OffCount), s.merge_count.data(), s.merge_count.size() * 4);
    std::memcpy(arr(kSm90OffStride), s.merge_stride.data(), s.merge_stride.size() * 4);
  }
  return off;
}

}  // namespace nc

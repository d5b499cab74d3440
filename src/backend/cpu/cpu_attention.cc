#include "backend/cpu/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/attention_rows.h"
#include "backend/cpu/cpu_isa.h"
#include "core/thread_pool.h"

namespace nc {

namespace {

constexpr float kLog2e = 1.4426950408889634f;

// Element offset of token `pos` of entry b, head h, K (kv=0) or V (kv=1).
int64_t slot_offset(const PagedKVBatch& batch, const KVCacheShape& kv, int b, int pos, int kv_idx,
                    int h) {
  const int32_t page = batch.kv_indices[batch.kv_indptr[b] + pos / kv.page_size];
  return int64_t(page) * kv.elems_per_page() + kv.offset_in_page(kv_idx, pos % kv.page_size, h);
}

const attn::RowKernels& row_kernels() {
  static const attn::RowKernels k =
      cpu_isa_active() == CpuIsa::Avx2 ? attn::avx2_rows() : attn::kPortableRows;
  return k;
}

// Calls fn(j0, n, offset) for the first `visible` tokens of entry b, one page at a time, in
// order: tokens j0 .. j0 + n - 1, whose K (kv_idx 0) or V (kv_idx 1) rows of head h start at
// element `offset` and lie `stride` elements apart.
template <typename Fn>
void for_each_run(const PagedKVBatch& batch, const KVCacheShape& kv, int b, int visible, int kv_idx,
                  int h, Fn&& fn) {
  const int ps = kv.page_size;
  const int32_t* pages = batch.kv_indices.data() + batch.kv_indptr[b];
  for (int j0 = 0, p = 0; j0 < visible; j0 += ps, ++p) {
    const int64_t base = int64_t(pages[p]) * kv.elems_per_page();
    fn(j0, std::min(ps, visible - j0), base + kv.offset_in_page(kv_idx, 0, h));
  }
}

// One (row, head): softmax(q.K^T * scale) V over the first `visible` keys of entry b.
void attend_row(const PagedKVBatch& batch, const AttentionShape& s, int b, int visible, int kv_head,
                const float* q, const float* pages, float* out, float* lse,
                std::vector<float>& scores) {
  const int D = s.head_dim;
  std::fill(out, out + D, 0.0f);
  if (visible <= 0) {
    if (lse) *lse = -std::numeric_limits<float>::infinity();
    return;
  }
  const attn::RowKernels& rk = row_kernels();
  const int64_t stride = s.kv.offset_in_page(0, 1, 0) - s.kv.offset_in_page(0, 0, 0);
  scores.resize(visible);
  for_each_run(batch, s.kv, b, visible, 0, kv_head, [&](int j0, int n, int64_t off) {
    rk.scores(q, pages + off, stride, n, D, s.sm_scale, scores.data() + j0);
  });
  float max_s = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < visible; ++j) max_s = std::max(max_s, scores[j]);
  float sum = 0.0f;
  for (int j = 0; j < visible; ++j) {
    scores[j] = std::exp(scores[j] - max_s);
    sum += scores[j];
  }
  const float inv_sum = 1.0f / sum;
  for (int j = 0; j < visible; ++j) scores[j] *= inv_sum;
  // out[d] accumulates over keys in order.
  for_each_run(batch, s.kv, b, visible, 1, kv_head, [&](int j0, int n, int64_t off) {
    rk.accumulate(scores.data() + j0, pages + off, stride, n, D, out);
  });
  if (lse) *lse = max_s * kLog2e + std::log2(sum);
}

}  // namespace

void cpu_append_kv(const PagedKVBatch& batch, const KVCacheShape& kv, const float* k,
                   const float* v, float* pages) {
  const int Hk = kv.num_kv_heads, D = kv.head_dim;
  for (int b = 0; b < batch.batch_size(); ++b) {
    const int q_len = batch.q_len(b), first = batch.kv_len(b, kv.page_size) - q_len;
    for (int j = 0; j < q_len; ++j) {
      const int64_t row = batch.qo_indptr[b] + j;
      for (int h = 0; h < Hk; ++h) {
        std::copy_n(k + (row * Hk + h) * D, D, pages + slot_offset(batch, kv, b, first + j, 0, h));
        std::copy_n(v + (row * Hk + h) * D, D, pages + slot_offset(batch, kv, b, first + j, 1, h));
      }
    }
  }
}

void cpu_paged_attention(const PagedKVBatch& batch, const AttentionShape& s, const float* q,
                         const float* pages, float* out, float* lse, ThreadPool* pool) {
  const int Hq = s.num_qo_heads, group = s.num_qo_heads / s.num_kv_heads, D = s.head_dim;
  // Work items: (row, head) pairs; each row knows its entry through a row -> entry table.
  const int64_t T = batch.qo_indptr.back();
  std::vector<int> entry_of_row(T);
  for (int b = 0; b < batch.batch_size(); ++b)
    std::fill(entry_of_row.begin() + batch.qo_indptr[b],
              entry_of_row.begin() + batch.qo_indptr[b + 1], b);
  (pool ? *pool : ThreadPool::global()).parallel_for(T * Hq, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t row = item / Hq;
      const int h = int(item % Hq), b = entry_of_row[row];
      const int kv_len = batch.kv_len(b, s.kv.page_size);
      const int j = int(row - batch.qo_indptr[b]);
      const int visible = batch.causal ? kv_len - batch.q_len(b) + j + 1 : kv_len;
      attend_row(batch, s, b, visible, h / group, q + (row * Hq + h) * D, pages,
                 out + (row * Hq + h) * D, lse ? lse + row * Hq + h : nullptr, scores);
    }
  });
}

void merge_attention_states(float* o_a, float* lse_a, const float* o_b, const float* lse_b,
                            int64_t rows, int heads, int head_dim) {
  for (int64_t i = 0; i < rows * heads; ++i) {
    const float la = lse_a[i], lb = lse_b[i];
    if (lb == -std::numeric_limits<float>::infinity()) continue;  // b is empty: a stays
    if (la == -std::numeric_limits<float>::infinity()) {          // a is empty: take b
      std::copy_n(o_b + i * head_dim, head_dim, o_a + i * head_dim);
      lse_a[i] = lb;
      continue;
    }
    const float m = std::max(la, lb);
    const float wa = std::exp2(la - m), wb = std::exp2(lb - m), sum = wa + wb;
    for (int d = 0; d < head_dim; ++d)
      o_a[i * head_dim + d] = (o_a[i * head_dim + d] * wa + o_b[i * head_dim + d] * wb) / sum;
    lse_a[i] = m + std::log2(sum);
  }
}

}  // namespace nc

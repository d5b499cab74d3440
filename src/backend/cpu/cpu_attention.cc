#include "backend/cpu/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/attention_rows.h"
#include "backend/cpu/cpu_isa.h"
#include "core/error.h"
#include "core/fp8.h"
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
      cpu_isa_active() != CpuIsa::Portable ? attn::avx2_rows() : attn::kPortableRows;
  return k;
}

// Calls fn(i, n, offset) for tokens lo .. hi - 1 of entry b, one page (or the part of it in
// range) at a time, in order: tokens lo + i .. lo + i + n - 1, whose K (kv_idx 0) or V (kv_idx 1)
// rows of head h start at element `offset` and lie `stride` elements apart. Pages wholly before
// lo are not touched.
template <typename Fn>
void for_each_run(const PagedKVBatch& batch, const KVCacheShape& kv, int b, int lo, int hi,
                  int kv_idx, int h, Fn&& fn) {
  const int ps = kv.page_size;
  const int32_t* pages = batch.kv_indices.data() + batch.kv_indptr[b];
  for (int j = lo; j < hi;) {
    const int slot = j % ps, n = std::min(ps - slot, hi - j);
    fn(j - lo, n,
       int64_t(pages[j / ps]) * kv.elems_per_page() + kv.offset_in_page(kv_idx, slot, h));
    j += n;
  }
}

// The keys one (row, head) sees: tokens lo .. hi - 1 of its entry.
struct KeyRange {
  int lo, hi;
};

// Where one (row, head) reads its keys and values: float32 pages as they are, or fp8 pages
// decoded run by run into `buf` (stride D) with the scales folded in (kv/kv_dtype.h).
struct PageReader {
  const KVCacheShape& kv;
  const void* pages;
  std::vector<float>& buf;

  // Rows of a run starting at element `off`, and their stride.
  std::pair<const float*, int64_t> rows(int64_t off, int64_t stride, int n, int D) const {
    if (!kv.fp8) return {static_cast<const float*>(pages) + off, stride};
    buf.resize(size_t(n) * D);
    const uint8_t* codes = static_cast<const uint8_t*>(pages) + off;
    for (int t = 0; t < n; ++t) dequantize_e4m3(codes + t * stride, D, buf.data() + t * D);
    return {buf.data(), D};
  }
  float key_scale() const { return kv.fp8 ? kv.k_scale : 1.0f; }
  float value_scale() const { return kv.fp8 ? kv.v_scale : 1.0f; }
};

// One (row, head): softmax(capped(q.K^T * scale)) V over keys [r.lo, r.hi) of entry b.
void attend_row(const PagedKVBatch& batch, const AttentionShape& s, const attn::RowKernels& rk,
                int b, KeyRange r, int kv_head, const float* q, const PageReader& pages, float* out,
                float* lse, std::vector<float>& scores) {
  const int D = s.head_dim, n_keys = r.hi - r.lo;
  std::fill(out, out + D, 0.0f);
  if (n_keys <= 0) {
    if (lse) *lse = -std::numeric_limits<float>::infinity();
    return;
  }
  const int64_t stride = s.kv.offset_in_page(0, 1, 0) - s.kv.offset_in_page(0, 0, 0);
  const float sm_scale = s.sm_scale * pages.key_scale();
  scores.resize(n_keys);
  for_each_run(batch, s.kv, b, r.lo, r.hi, 0, kv_head, [&](int i, int n, int64_t off) {
    const auto [k, k_stride] = pages.rows(off, stride, n, D);
    rk.scores(q, k, k_stride, n, D, sm_scale, scores.data() + i);
  });
  // The soft cap acts on the scores themselves: the max, the sum and so the LSE are of the
  // capped scores, which keeps the merge of levels exact.
  if (const float cap = s.logits_soft_cap; cap > 0.0f)
    for (float& x : scores) x = cap * std::tanh(x / cap);
  float max_s = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < n_keys; ++j) max_s = std::max(max_s, scores[j]);
  float sum = 0.0f;
  for (int j = 0; j < n_keys; ++j) {
    scores[j] = std::exp(scores[j] - max_s);
    sum += scores[j];
  }
  const float inv_sum = 1.0f / sum;
  for (int j = 0; j < n_keys; ++j) scores[j] *= inv_sum;
  // out[d] accumulates over keys in order.
  for_each_run(batch, s.kv, b, r.lo, r.hi, 1, kv_head, [&](int i, int n, int64_t off) {
    const auto [v, v_stride] = pages.rows(off, stride, n, D);
    rk.accumulate(scores.data() + i, v, v_stride, n, D, out);
  });
  if (const float vs = pages.value_scale(); vs != 1.0f)
    for (int d = 0; d < D; ++d) out[d] *= vs;
  if (lse) *lse = max_s * kLog2e + std::log2(sum);
}

// The keys row j of entry b sees: all (non-causal) or up to its position kv_len - q_len + j
// (causal), and with a window not before its position - window_left.
KeyRange key_range(const PagedKVBatch& batch, const AttentionShape& s, int b, int j) {
  const int kv_len = batch.kv_len(b, s.kv.page_size), pos = kv_len - batch.q_len(b) + j;
  const int hi = batch.causal ? pos + 1 : kv_len;
  return {s.window_left >= 0 ? std::max(0, pos - s.window_left) : 0, hi};
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

void cpu_append_kv_fp8(const PagedKVBatch& batch, const KVCacheShape& kv, const float* k,
                       const float* v, uint8_t* pages) {
  NC_CHECK(kv.fp8, "cpu_append_kv_fp8: the cache is not fp8");
  NC_CHECK(
      kv.k_scale > 0 && kv.v_scale > 0 && std::isfinite(kv.k_scale) && std::isfinite(kv.v_scale),
      "fp8 kv cache: scales k {} v {} must be finite and > 0", kv.k_scale, kv.v_scale);
  const int Hk = kv.num_kv_heads, D = kv.head_dim;
  const float inv_k = 1.0f / kv.k_scale, inv_v = 1.0f / kv.v_scale;
  for (int b = 0; b < batch.batch_size(); ++b) {
    const int q_len = batch.q_len(b), first = batch.kv_len(b, kv.page_size) - q_len;
    for (int j = 0; j < q_len; ++j) {
      const int64_t row = batch.qo_indptr[b] + j;
      for (int h = 0; h < Hk; ++h) {
        quantize_e4m3(k + (row * Hk + h) * D, D, inv_k,
                      pages + slot_offset(batch, kv, b, first + j, 0, h));
        quantize_e4m3(v + (row * Hk + h) * D, D, inv_v,
                      pages + slot_offset(batch, kv, b, first + j, 1, h));
      }
    }
  }
}

void cpu_paged_attention(const PagedKVBatch& batch, const AttentionShape& s, const float* q,
                         const void* pages, float* out, float* lse, ThreadPool* pool,
                         const attn::RowKernels* kernels) {
  const int Hq = s.num_qo_heads, group = s.num_qo_heads / s.num_kv_heads, D = s.head_dim;
  const attn::RowKernels& rk = kernels ? *kernels : row_kernels();
  // Work items: (row, head) pairs; each row knows its entry through a row -> entry table.
  const int64_t T = batch.qo_indptr.back();
  std::vector<int> entry_of_row(T);
  for (int b = 0; b < batch.batch_size(); ++b)
    std::fill(entry_of_row.begin() + batch.qo_indptr[b],
              entry_of_row.begin() + batch.qo_indptr[b + 1], b);
  (pool ? *pool : ThreadPool::global()).parallel_for(T * Hq, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores, decoded;
    const PageReader reader{s.kv, pages, decoded};
    for (int64_t item = begin; item < end; ++item) {
      const int64_t row = item / Hq;
      const int h = int(item % Hq), b = entry_of_row[row];
      const KeyRange keys = key_range(batch, s, b, int(row - batch.qo_indptr[b]));
      attend_row(batch, s, rk, b, keys, h / group, q + (row * Hq + h) * D, reader,
                 out + (row * Hq + h) * D, lse ? lse + row * Hq + h : nullptr, scores);
    }
  });
}

void cpu_attend_levels(const AttentionStep& step, const AttentionShape& s, const float* q,
                       const void* pages, float* o) {
  if (step.levels.size() == 1) {
    cpu_paged_attention(step.levels[0], s, q, pages, o, nullptr);
    return;
  }
  const int64_t T = step.num_tokens, Hq = s.num_qo_heads;
  std::vector<float> lse(size_t(T * Hq)), o_own(size_t(T * Hq * s.head_dim)),
      lse_own(size_t(T * Hq));
  cpu_attend_shared_levels(step, s, q, pages, o, lse.data());
  cpu_paged_attention(step.levels.back(), s, q, pages, o_own.data(), lse_own.data());
  merge_attention_states(o, lse.data(), o_own.data(), lse_own.data(), T, int(Hq), s.head_dim);
}

void cpu_attend_shared_levels(const AttentionStep& step, const AttentionShape& s, const float* q,
                              const void* pages, float* o, float* lse) {
  NC_CHECK(step.levels.size() >= 2, "cpu_attend_shared_levels: {} levels, no shared one",
           step.levels.size());
  const int64_t T = step.num_tokens, Hq = s.num_qo_heads;
  AttentionShape shared = s;
  shared.window_left = -1;
  std::vector<float> o_level(size_t(T * Hq * s.head_dim)), lse_level(size_t(T * Hq));
  cpu_paged_attention(step.levels[0], shared, q, pages, o, lse);
  for (size_t l = 1; l + 1 < step.levels.size(); ++l) {
    cpu_paged_attention(step.levels[l], shared, q, pages, o_level.data(), lse_level.data());
    merge_attention_states(o, lse, o_level.data(), lse_level.data(), T, int(Hq), s.head_dim);
  }
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

// Sparse decode attention on the CPU (contract: cpu_sparse.h).
#include "backend/cpu/cpu_sparse.h"

#include <cstring>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_attention.h"
#include "core/error.h"
#include "core/fp8.h"
#include "kv/head_selection.h"
#include "kv/page_bounds.h"

namespace nc {

namespace {

// A PageBounds view of a bounds tensor shaped for kv, or an error naming the mismatch.
PageBounds bounds_view(const Tensor& bounds, const KVCacheShape& kv, const char* what) {
  bounds.expect_dtype(DType::F32, what);
  bounds.expect_device(Device::CPU, what);
  bounds.expect_contiguous(what);
  bounds.expect_shape({kv.num_pages, 2, kv.num_kv_heads, kv.head_dim}, what);
  return PageBounds::view(bounds.ptr<float>(), kv.num_pages, kv.num_kv_heads, kv.head_dim);
}

}  // namespace

void cpu_update_page_bounds(const Tensor& kv_pages, const KVCacheShape& kv,
                            const Tensor& page_slots, Tensor bounds) {
  NC_CHECK(!kv.latent, "update_page_bounds: an MLA (latent) cache has no per-head keys");
  PageBounds b = bounds_view(bounds, kv, "update_page_bounds bounds");
  page_slots.expect_dtype(DType::I32, "update_page_bounds page_slots");
  NC_CHECK(page_slots.ndim() == 2 && page_slots.dim(1) == 2,
           "update_page_bounds: page_slots of shape {} (needs [P, 2])",
           shape_str(page_slots.shape()));
  kv_pages.expect_dtype(kv.fp8 ? DType::F8E4M3 : DType::F32, "update_page_bounds kv pages");
  NC_CHECK(kv_pages.numel() == int64_t(kv.num_pages) * kv.elems_per_page(),
           "update_page_bounds: kv pages of shape {} for {} pages of {} values",
           shape_str(kv_pages.shape()), kv.num_pages, kv.elems_per_page());
  const int32_t* ps = page_slots.ptr<int32_t>();
  std::vector<float> decoded;
  for (int64_t i = 0; i < page_slots.dim(0); ++i) {
    const int page = ps[2 * i], slots = ps[2 * i + 1];
    NC_CHECK(page >= 0 && page < kv.num_pages, "update_page_bounds: page {} outside [0, {})", page,
             kv.num_pages);
    NC_CHECK(slots >= 1 && slots <= kv.page_size,
             "update_page_bounds: page {} has {} valid slots (needs 1..{})", page, slots,
             kv.page_size);
    const int64_t off = int64_t(page) * kv.elems_per_page();
    if (!kv.fp8) {
      b.rebuild_from(page, kv_pages.ptr<float>() + off, kv, slots);
      continue;
    }
    // The K half decoded and scaled: the same element offsets as the codes'.
    const int64_t half = kv.elems_per_page() / 2;
    decoded.resize(size_t(half));
    dequantize_e4m3(static_cast<const uint8_t*>(kv_pages.data()) + off, half, decoded.data());
    for (float& x : decoded) x *= kv.k_scale;
    b.rebuild_from(page, decoded.data(), kv, slots);
  }
}

AttentionStep cpu_sparse_step(const AttentionStep& step, const AttentionShape& shape,
                              const PageSelection& sel, const float* q, const Tensor& bounds) {
  const PageBounds b = bounds_view(bounds, shape.kv, "sparse_attention bounds");
  const auto scores = decode_page_scores(step, b, q, shape.num_qo_heads);
  return select_pages(step, scores, sel, shape.kv.page_size, shape.window_left);
}

namespace {

// The own level with each entry of `hs` cut to its last page (its rows are overwritten by the
// per-head pass; the cut keeps the batch valid and cheap).
PagedKVBatch own_without_sparse(const PagedKVBatch& own, const HeadSelection& hs, int ps) {
  PagedKVBatch out;
  out.causal = own.causal;
  for (int b = 0; b < own.batch_size(); ++b) {
    const int n = own.num_pages(b);
    const std::span<const int32_t> pages =
        std::span<const int32_t>(own.kv_indices).subspan(size_t(own.kv_indptr[b]), size_t(n));
    if (hs.sparse(b))
      out.add_pages(1, pages.subspan(size_t(n - 1)), own.kv_last_page_len[size_t(b)], ps);
    else
      out.add_pages(own.q_len(b), pages, own.kv_len(b, ps), ps);
  }
  return out;
}

// The per-head pass: o/lse rows of every sparse entry from attention over its heads' kept pages,
// copied as one-head pages (HND: a head's K block and V block of a page are contiguous).
void attend_heads(const PagedKVBatch& own, const HeadSelection& hs, const AttentionShape& s,
                  const float* q, const void* pages, float* o, float* lse) {
  const KVCacheShape& kv = s.kv;
  const int hk = kv.num_kv_heads, ps = kv.page_size, d = s.head_dim, hq = s.num_qo_heads;
  const size_t elem = kv.fp8 ? 1 : sizeof(float), block = size_t(ps) * d * elem;
  KVCacheShape one = kv;  // the scratch pool: pages of one KV head
  one.num_kv_heads = 1;
  one.num_pages = 0;
  std::vector<int> rows;  // the query row of each sparse entry
  for (int b = 0; b < own.batch_size(); ++b)
    if (hs.sparse(b)) {
      rows.push_back(own.qo_indptr[b]);
      for (const auto& head : hs.kept[size_t(b)]) one.num_pages += int(head.size());
    }
  if (rows.empty()) return;
  std::vector<char> scratch(size_t(one.num_pages) * 2 * block);
  std::vector<float> qh(rows.size() * hq * d), oh(qh.size()), lh(rows.size() * hq);
  PagedKVBatch batch;
  const char* base = static_cast<const char*>(pages);
  int next = 0;
  for (size_t i = 0, b = 0; i < rows.size(); ++b) {
    if (!hs.sparse(int(b))) continue;
    std::memcpy(qh.data() + i * hq * d, q + int64_t(rows[i]) * hq * d, size_t(hq) * d * 4);
    for (int h = 0; h < hk; ++h) {
      std::vector<int32_t> ids;
      for (int32_t p : hs.kept[b][size_t(h)]) {
        const char* page = base + int64_t(p) * kv.elems_per_page() * int64_t(elem);
        char* dst = scratch.data() + size_t(next) * 2 * block;
        std::memcpy(dst, page + kv.offset_in_page(0, 0, h) * int64_t(elem), block);
        std::memcpy(dst + block, page + kv.offset_in_page(1, 0, h) * int64_t(elem), block);
        ids.push_back(next++);
      }
      batch.add_pages(1, ids, hs.kv_len(int(b), ps), ps);
    }
    ++i;
  }
  AttentionShape hs1 = s;
  hs1.num_qo_heads = hq / hk;
  hs1.num_kv_heads = 1;
  hs1.kv = one;
  cpu_paged_attention(batch, hs1, qh.data(), scratch.data(), oh.data(), lh.data());
  // Rows (entry i, head h) of [n*Hk, g*D] are rows i of [n, Hq*D]: copy them back in place.
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(o + int64_t(rows[i]) * hq * d, oh.data() + i * hq * d, size_t(hq) * d * 4);
    std::memcpy(lse + int64_t(rows[i]) * hq, lh.data() + i * hq, size_t(hq) * 4);
  }
}

}  // namespace

void cpu_attend_head_sparse(const AttentionStep& step, const AttentionShape& s,
                            const PageSelection& sel, const float* q, const void* pages,
                            const Tensor& bounds, float* out) {
  const PageBounds b = bounds_view(bounds, s.kv, "sparse_attention bounds");
  const HeadSelection hs = select_head_pages(
      step, decode_head_page_scores(step, b, q, s.num_qo_heads), sel, s.kv, s.window_left);
  const int64_t T = step.num_tokens, Hq = s.num_qo_heads;
  const size_t last = step.levels.size() - 1;
  // The own level: dense entries as they are, sparse ones per head.
  std::vector<float> o_own(size_t(T * Hq * s.head_dim)), lse_own(size_t(T * Hq));
  cpu_paged_attention(own_without_sparse(step.levels[last], hs, s.kv.page_size), s, q, pages,
                      o_own.data(), lse_own.data());
  attend_heads(step.levels[last], hs, s, q, pages, o_own.data(), lse_own.data());
  if (last == 0) {
    std::memcpy(out, o_own.data(), o_own.size() * sizeof(float));
    return;
  }
  // Merged in cpu_attend_levels' order: the shared levels (read whole), then the own level.
  std::vector<float> lse(lse_own.size());
  cpu_attend_shared_levels(step, s, q, pages, out, lse.data());
  merge_attention_states(out, lse.data(), o_own.data(), lse_own.data(), T, int(Hq), s.head_dim);
}

}  // namespace nc

// decode_head_page_scores, select_head_pages, head_page_batch (contract: head_selection.h).
#include "kv/head_selection.h"

#include <span>

#include "core/error.h"

namespace nc {

void check_per_head_layout(const KVCacheShape& kv) {
  NC_CHECK(
      kv.layout == KVLayout::HND && !kv.latent,
      "per-head sparse selection needs the HND layout (a KV head's block of a page is "
      "contiguous only there), the cache is {}{}: use --kv-layout HND or per-request selection",
      kv.layout == KVLayout::HND ? "HND" : "NHD", kv.latent ? " latent (MLA)" : "");
}

std::vector<std::vector<std::vector<float>>> decode_head_page_scores(const AttentionStep& step,
                                                                     const PageBounds& bounds,
                                                                     const float* q,
                                                                     int num_qo_heads) {
  const int hk = bounds.num_kv_heads(), d = bounds.head_dim();
  NC_CHECK(num_qo_heads >= hk && num_qo_heads % hk == 0,
           "decode_head_page_scores: {} query heads not a multiple of {} kv heads", num_qo_heads,
           hk);
  NC_CHECK(!step.levels.empty(), "decode_head_page_scores: the step has no levels");
  const int group = num_qo_heads / hk;
  const PagedKVBatch& own = step.levels.back();
  std::vector<std::vector<std::vector<float>>> scores(size_t(own.batch_size()));
  for (int b = 0; b < own.batch_size(); ++b) {
    if (own.q_len(b) != 1) continue;  // a prefill chunk: read densely
    const float* row = q + int64_t(own.qo_indptr[b]) * num_qo_heads * d;
    auto& entry = scores[size_t(b)];
    entry.resize(size_t(hk));
    for (int h = 0; h < hk; ++h)
      for (int i = own.kv_indptr[b]; i < own.kv_indptr[b + 1]; ++i)
        entry[size_t(h)].push_back(
            bounds.upper_bound(own.kv_indices[size_t(i)], h, row + int64_t(h) * group * d, group));
  }
  return scores;
}

HeadSelection select_head_pages(const AttentionStep& step,
                                const std::vector<std::vector<std::vector<float>>>& scores,
                                const PageSelection& sel, const KVCacheShape& kv, int window_left) {
  const int ps = kv.page_size, hk = kv.num_kv_heads;
  check_per_head_layout(kv);
  check_page_selection(step, sel, ps, window_left);
  const PagedKVBatch& own = step.levels.back();
  NC_CHECK(scores.size() == size_t(own.batch_size()),
           "select_head_pages: scores for {} entries, the own level has {}", scores.size(),
           own.batch_size());
  HeadSelection out;
  out.kept.resize(size_t(own.batch_size()));
  out.last_page_len = own.kv_last_page_len;
  for (int b = 0; b < own.batch_size(); ++b) {
    if (!entry_is_sparse(own, b, sel, ps)) continue;
    const int n = own.num_pages(b);
    const auto& entry = scores[size_t(b)];
    NC_CHECK(entry.size() == size_t(hk),
             "select_head_pages: entry {} has scores for {} heads, "
             "the cache has {} kv heads",
             b, entry.size(), hk);
    const std::span<const int32_t> pages =
        std::span<const int32_t>(own.kv_indices).subspan(size_t(own.kv_indptr[b]), size_t(n));
    for (int h = 0; h < hk; ++h) {
      NC_CHECK(entry[size_t(h)].size() == size_t(n),
               "select_head_pages: entry {} head {} has {} pages but {} scores", b, h, n,
               entry[size_t(h)].size());
      std::vector<int32_t> kept;
      for (int i : kept_page_indices(entry[size_t(h)], n, own.kv_last_page_len[size_t(b)], ps,
                                     sel.budget(b), sel))
        kept.push_back(pages[size_t(i)]);
      out.kept[size_t(b)].push_back(std::move(kept));
    }
  }
  return out;
}

PagedKVBatch head_page_batch(const HeadSelection& sel, int num_kv_heads, int page_size) {
  PagedKVBatch out;
  for (size_t b = 0; b < sel.kept.size(); ++b) {
    if (!sel.sparse(int(b))) continue;
    NC_CHECK(sel.kept[b].size() == size_t(num_kv_heads),
             "head_page_batch: entry {} has {} head lists for {} kv heads", b, sel.kept[b].size(),
             num_kv_heads);
    for (int h = 0; h < num_kv_heads; ++h) {
      std::vector<int32_t> ids;
      for (int32_t p : sel.kept[b][size_t(h)]) ids.push_back(head_page_id(p, h, num_kv_heads));
      out.add_pages(1, ids, sel.kv_len(int(b), page_size), page_size);
    }
  }
  return out;
}

}  // namespace nc

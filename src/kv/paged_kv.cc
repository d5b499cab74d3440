#include "kv/paged_kv.h"

#include "core/error.h"

namespace nc {

void PagedKVBatch::add_pages(int q_len, std::span<const int32_t> pages, int kv_len, int page_size) {
  NC_CHECK(q_len >= 0 && kv_len >= 0, "paged batch: negative length");
  NC_CHECK(int64_t(pages.size()) == (int64_t(kv_len) + page_size - 1) / page_size,
           "paged batch: {} pages cannot hold exactly {} tokens at page size {}", pages.size(),
           kv_len, page_size);
  qo_indptr.push_back(qo_indptr.back() + q_len);
  kv_indptr.push_back(kv_indptr.back() + int32_t(pages.size()));
  kv_indices.insert(kv_indices.end(), pages.begin(), pages.end());
  kv_last_page_len.push_back(kv_len == 0 ? 0 : kv_len - (int(pages.size()) - 1) * page_size);
}

void PagedKVBatch::validate(int num_tokens, int page_size, int num_pages_total) const {
  const int b = batch_size();
  NC_CHECK(int(qo_indptr.size()) == b + 1 && int(kv_indptr.size()) == b + 1,
           "paged batch: qo_indptr ({}) and kv_indptr ({}) must have batch_size+1 = {} entries",
           qo_indptr.size(), kv_indptr.size(), b + 1);
  NC_CHECK(qo_indptr[0] == 0 && kv_indptr[0] == 0, "paged batch: indptr must start at 0");
  NC_CHECK(qo_indptr[b] == num_tokens, "paged batch: qo_indptr ends at {}, step has {} tokens",
           qo_indptr[b], num_tokens);
  NC_CHECK(kv_indptr[b] == int(kv_indices.size()), "paged batch: kv_indptr ends at {}, {} indices",
           kv_indptr[b], kv_indices.size());
  for (int i = 0; i < b; ++i) {
    NC_CHECK(qo_indptr[i + 1] >= qo_indptr[i] && kv_indptr[i + 1] >= kv_indptr[i],
             "paged batch: indptr decreases at entry {}", i);
    const int last = kv_last_page_len[i];
    if (num_pages(i) == 0) {
      NC_CHECK(last == 0, "paged batch: empty entry {} has last_page_len {}", i, last);
    } else {
      NC_CHECK(last >= 1 && last <= page_size,
               "paged batch: last_page_len {} of entry {} outside 1..{}", last, i, page_size);
    }
    if (causal) {
      NC_CHECK(kv_len(i, page_size) >= q_len(i),
               "paged batch: causal entry {} has {} queries but only {} keys", i, q_len(i),
               kv_len(i, page_size));
    }
  }
  for (int32_t p : kv_indices) {
    NC_CHECK(p >= 0 && p < num_pages_total, "paged batch: page id {} outside [0, {})", p,
             num_pages_total);
  }
}

}  // namespace nc

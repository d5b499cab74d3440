// The paged KV cache in FlashInfer's terms.
//
// Per layer, one tensor of pages: [num_pages, 2, page_size, num_kv_heads, head_dim] (NHD) or
// [num_pages, 2, num_kv_heads, page_size, head_dim] (HND); index 0 of the second dimension is K,
// 1 is V. An MLA cache (latent = true: DeepSeek's compressed KV) has one plane and no V: per
// layer [num_pages, page_size, 1, head_dim] with head_dim = kv_lora_rank + qk_rope_head_dim, each
// slot the token's [c_kv | k_pe] (FlashInfer's MLA kernels read it as a ckv cache and a kpe cache
// with the slot stride head_dim). A batch addresses pages through a CSR page table (all int32,
// built on the host):
//   kv_indptr[B+1]       prefix sums of each entry's page count
//   kv_indices[...]      the page ids of entry b are kv_indices[kv_indptr[b] .. kv_indptr[b+1])
//   kv_last_page_len[B]  valid slots in the entry's last page (1..page_size; 0 for an empty entry)
// and the queries of entry b are rows qo_indptr[b] .. qo_indptr[b+1] of the step's tokens.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace nc {

enum class KVLayout : uint8_t { NHD, HND };

struct KVCacheShape {
  int num_layers = 0;
  int num_pages = 0;
  int page_size = 16;
  int num_kv_heads = 0;
  int head_dim = 0;
  KVLayout layout = KVLayout::NHD;
  bool latent = false;  // MLA: K (the latent row) only, num_kv_heads 1
  // An fp8 cache (kv/kv_dtype.h): pages hold e4m3 codes, one byte a value, and stored values are
  // the true ones divided by k_scale (K) or v_scale (V). Elements and offsets below are then
  // bytes.
  bool fp8 = false;
  float k_scale = 1.0f;
  float v_scale = 1.0f;

  int64_t elems_per_page() const {
    return int64_t(latent ? 1 : 2) * page_size * num_kv_heads * head_dim;
  }
  // Offset (in elements) of token slot `slot` of head `h` in a page, for K (kv=0) or V (kv=1).
  int64_t offset_in_page(int kv, int slot, int h) const {
    const int64_t half = int64_t(page_size) * num_kv_heads * head_dim;
    return kv * half + (layout == KVLayout::NHD ? (int64_t(slot) * num_kv_heads + h) * head_dim
                                                : (int64_t(h) * page_size + slot) * head_dim);
  }
};

// One FlashInfer-style batch over paged KV.
struct PagedKVBatch {
  std::vector<int32_t> qo_indptr{0};
  std::vector<int32_t> kv_indptr{0};
  std::vector<int32_t> kv_indices;
  std::vector<int32_t> kv_last_page_len;
  bool causal = true;

  int batch_size() const { return int(kv_last_page_len.size()); }
  int num_pages(int b) const { return kv_indptr[b + 1] - kv_indptr[b]; }
  int kv_len(int b, int page_size) const {
    const int n = num_pages(b);
    return n == 0 ? 0 : (n - 1) * page_size + kv_last_page_len[b];
  }
  int q_len(int b) const { return qo_indptr[b + 1] - qo_indptr[b]; }

  // Adds an entry of q_len query rows over `pages` holding kv_len tokens.
  void add(int q_len, const std::vector<int32_t>& pages, int kv_len, int page_size) {
    add_pages(q_len, pages, kv_len, page_size);
  }
  void add_pages(int q_len, std::span<const int32_t> pages, int kv_len, int page_size);
  // Throws nc::Error when the arrays are inconsistent (sizes, monotonicity, page ids out of
  // [0, num_pages), last_page_len outside 1..page_size, a causal entry with kv_len < q_len).
  void validate(int num_tokens, int page_size, int num_pages) const;
};

// The attention of one step: levels of batches over the same pages, merged by attention-state
// merge. levels.back() holds each request's own pages, including the slots that the step's new
// K/V is appended into (the last q_len slots of each entry); earlier levels hold shared prefixes
// (cascade), read without a causal mask. Without cascade there is exactly one level.
struct AttentionStep {
  int num_tokens = 0;
  std::vector<PagedKVBatch> levels;
};

}  // namespace nc

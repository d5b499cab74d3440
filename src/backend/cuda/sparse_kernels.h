// The device side of query-aware sparse decode attention (Quest; backend.h's update_page_bounds,
// plan_sparse_attention, sparse_attention; kv/page_bounds.h and kv/page_selection.h are the CPU
// reference), in a header of its own beside kernels.h so that it rebuilds no FlashInfer unit.
//
// Page bounds: f32 [num_pages, 2, num_kv_heads, head_dim], per page the element-wise min (0) and
// max (1) of its valid keys, +inf / -inf on a page without any.
//
// A sparse step's decode entries are described by a table of kSparseEntryFields int32 per entry
// (SparseEntry below), built on the host by the plan: the entry's page list (full_indices from
// src_off, n pages), its candidate pages [cand0, cand1) (the pages that are neither sinks nor
// window nor the last page; forced pages are [0, cand0) and [cand1, n)), how many candidates to
// keep (0 <= keep <= cand1 - cand0, fixed by the token budget) and where its kept page ids go in
// the attention plan's kv_indices (out_off, cand0 + (n - cand1) + keep ids in sequence order).
//
// sparse_page_scores writes scores[src_off + i] for each candidate i of each entry: the maximum
// over KV heads and the query heads of their group of sum_d max(q_d * min_d, q_d * max_d) (-inf
// on an empty page); the sum's order differs from the CPU's (lanes, then a tree), so scores may
// differ from the CPU's in the last bits. sparse_select_pages keeps, per entry, the forced pages
// and the `keep` candidates of highest score (ties: the earlier page), exactly as select_pages
// orders them (-0 and +0 tie): the threshold from one histogram over the scores' range and then
// the keys of the threshold's bin alone (a radix select over every key where scores bunch, or
// where an entry has more candidates than shared memory holds), then an ordered compaction; it
// writes exactly the planned number of ids whatever the scores hold. On compute capability 9.x
// both launch with programmatic dependent launch (pdl.h): the selection's launch overlaps the
// scores' tail.
//
// Every function enqueues work on `stream` and throws std::runtime_error when a launch fails.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace nc::cuda {

struct PageBoundsArgs {
  const void* pages = nullptr;  // the layer's page tensor: bf16, or e4m3 codes where fp8
  bool fp8 = false;             // codes decoded and multiplied by k_scale (the keys they stand for)
  float k_scale = 1.0f;
  float* bounds = nullptr;
  const int32_t* page_slots = nullptr;  // [num_listed, 2]: (page id, valid slots)
  int num_listed = 0;
  int num_pages = 0;
  int page_size = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  // even
  bool hnd = false;
};
// Recomputes the listed pages' bounds from their first `valid slots` K slots. Rows whose page id
// lies outside [0, num_pages) are skipped; valid slots are clamped to [0, page_size].
void update_page_bounds(const PageBoundsArgs& a, cudaStream_t stream);

inline constexpr int kSparseEntryFields = 8;
enum SparseEntry : int {
  kSeQRow = 0,  // the entry's query row in q
  kSeSrcOff,    // its first page in full_indices (and its scores' offset)
  kSeNumPages,
  kSeCand0,
  kSeCand1,
  kSeKeep,
  kSeOutOff,  // its first kept id in out_indices
};

struct SparseSelectArgs {
  const void* q = nullptr;  // bf16 [T, num_qo_heads * head_dim], contiguous
  const float* bounds = nullptr;
  const int32_t* entries = nullptr;  // [num_entries, kSparseEntryFields]
  const int32_t* full_indices = nullptr;
  float* scores = nullptr;         // one per page of full_indices
  int32_t* out_indices = nullptr;  // the attention plan's own-level kv_indices
  int num_entries = 0;
  int max_candidates = 0;  // the most candidates of any entry
  int num_qo_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  // 64, 96, 128 or 256
};
// False for a head dim the score kernel is not compiled for.
bool sparse_head_dim_supported(int head_dim);
void sparse_page_scores(const SparseSelectArgs& a, cudaStream_t stream);
void sparse_select_pages(const SparseSelectArgs& a, cudaStream_t stream);

}  // namespace nc::cuda

// The work schedule of FlashInfer's Hopper (sm90) batch prefill over one cascade shared level, as
// the CUDA backend plans it (attn_prefill_sm90.cu runs it). Host code only, so the CPU tests check
// it: the GPU kernel is the only other reader.
//
// FlashInfer's own sm90 plan never splits a query tile's KV: one work item is (entry, query tile
// of CTA_Q rows, query head) over the entry's whole KV. A shared level is few entries with few
// query tiles over a long prefix (1 entry, 128 rows, 32 heads over 32k tokens: 32 work items for
// 132 SMs), so this planner may split long KV into page-aligned chunks when that shortens the
// estimated busiest-CTA time. The kernel addresses Q and O through the same row offset, so a split
// entry's query rows are replicated once per chunk (the gather map), each chunk writes its own
// partial output and base-2 LSE, and the merge maps say which partial rows make each output row:
// row t combines partial rows merge_first[t] + c * merge_stride[t] for c < merge_count[t].
//
// Work items go to the persistent CTAs longest first, each to the least loaded CTA. A work's cost
// is its KV length plus two query tiles (FlashInfer's sm90 cost model uses the same 2 * qo + kv).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace nc {

// One non-causal paged level: CSR host arrays as FlashInfer's plans take them.
struct Sm90Level {
  const int32_t* qo_indptr = nullptr;         // batch + 1 rows offsets
  const int32_t* kv_indptr = nullptr;         // batch + 1 page offsets
  const int32_t* kv_last_page_len = nullptr;  // batch: tokens in each entry's last page
  int batch_size = 0;
  int total_rows = 0;
  int num_qo_heads = 0;
  int head_dim = 0;  // 64 or 128
  int page_size = 0;
};

// One work item of the kernel's persistent tile scheduler.
struct Sm90Work {
  int32_t qo_tile, qo_indptr, kv_indptr, qo_len, kv_len, head, batch;
  int64_t cost;
};

struct Sm90Schedule {
  int ctas = 0;
  int chunk_pages = 0;  // 0: no split (the kernel reads q and writes the output directly)
  int rep_rows = 0;     // rows of the replicated q / partial outputs when split
  std::vector<std::vector<Sm90Work>> per_cta;
  std::vector<int32_t> gather_src;                              // [rep_rows]
  std::vector<int32_t> merge_first, merge_count, merge_stride;  // [total_rows] each
};

// The kernel's query tile (CTA_Q): FlashInfer's paged sm90 dispatch uses 128 rows for head_dim
// 128 and 192 for 64.
int sm90_query_tile(int head_dim);

// The schedule over `ctas` persistent CTAs. chunk_pages < 0 lets the cost model choose the split
// (0 = none); chunk_pages >= 0 forces it (NC_SM90_CHUNK_PAGES). Throws nc::Error for a level
// without kv_last_page_len.
Sm90Schedule make_sm90_schedule(const Sm90Level& level, int ctas, int chunk_pages = -1);

// The plan's int64 fields (PlanInfo) as the kernel's run reads them: counts, then the byte
// offsets of the int32 arrays in the int workspace.
enum Sm90PlanField : int {
  kSm90Split,
  kSm90Ctas,
  kSm90Works,
  kSm90RepRows,
  kSm90Rows,
  kSm90Heads,
  kSm90HeadDim,
  kSm90OffQoTile,
  kSm90OffQoIndptr,
  kSm90OffKvIndptr,
  kSm90OffQoLen,
  kSm90OffKvLen,
  kSm90OffHead,
  kSm90OffBatch,
  kSm90OffWorkIndptr,  // [ctas + 1]: CTA c runs works [work_indptr[c], work_indptr[c + 1])
  kSm90OffGather,
  kSm90OffFirst,
  kSm90OffCount,
  kSm90OffStride,
  kSm90NumFields
};

// Lays the schedule's arrays out at 16-byte aligned offsets and fills `info`; when `dst` is given,
// writes the arrays there. Returns the int workspace bytes the plan needs.
size_t layout_sm90_schedule(const Sm90Schedule& s, const Sm90Level& level,
                            std::vector<int64_t>* info, char* dst);

// Float-workspace regions of a split run: replicated q, partial outputs (bf16), partial LSE.
struct Sm90SplitBuffers {
  size_t q_off = 0, o_off = 0, lse_off = 0, bytes = 0;
};

inline Sm90SplitBuffers sm90_split_buffers(int64_t rep_rows, int64_t heads, int64_t head_dim) {
  auto align256 = [](size_t n) { return (n + 255) / 256 * 256; };
  Sm90SplitBuffers b;
  const size_t rows_bytes = align256(size_t(rep_rows * heads * head_dim * 2));
  b.o_off = rows_bytes;
  b.lse_off = 2 * rows_bytes;
  b.bytes = b.lse_off + align256(size_t(rep_rows * heads * 4));
  return b;
}

}  // namespace nc

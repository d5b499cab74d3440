// Paged attention on the CPU, float32: the reference every other attention is checked against.
//
// Scores (AttentionShape's variants, backend.h): s_j = q.k_j * sm_scale, then, with
// logits_soft_cap > 0, s_j = cap * tanh(s_j / cap). window_left >= 0 hides from row j of entry b
// the keys before kv_len - q_len + j - window_left, and applies to whatever batch it is given:
// the caller passes -1 for the shared levels of a cascade step (the CPU backend does).
//
// Log-sum-exp convention (as FlashInfer): lse = log2(sum_j exp(s_j)) over the (capped) scores of
// the keys a row sees, i.e. base 2. A row with no keys has lse = -inf and output 0; merging with
// it is exact.
#pragma once
#include "core/tensor.h"
#include "kv/paged_kv.h"

namespace nc {

struct AttentionShape;
class ThreadPool;
namespace attn {
struct RowKernels;
}

// Writes k/v rows [T, Hk*D] into the slots named by `batch` (the last q_len slots of each entry).
void cpu_append_kv(const PagedKVBatch& batch, const KVCacheShape& kv, const float* k,
                   const float* v, float* pages);
// The same for an fp8 cache (kv.fp8): each value is divided by kv.k_scale (K) or kv.v_scale (V)
// and stored as its e4m3 code (core/fp8.h: the bytes CUDA's __NV_SATFINITE conversion writes).
void cpu_append_kv_fp8(const PagedKVBatch& batch, const KVCacheShape& kv, const float* k,
                       const float* v, uint8_t* pages);

// out[T, Hq*D] = attention of q over the pages of `batch` (causal or not, as the batch says);
// lse (optional, [T, Hq]) receives the base-2 log-sum-exp of each row and head. The (row, head)
// pairs are split across `pool`'s threads (null: ThreadPool::global()); each is computed in a
// fixed order from its own row, so the result is the same bit for bit whatever the thread
// count and whatever else is in the batch. Keys wholly outside a row's window are not read.
// `kernels` (tests) forces a row-kernel path (attention_rows.h); null: the one cpu_isa.h picks.
// pages are float32, or e4m3 codes where shape.kv.fp8: then each page run is decoded exactly to
// float32 and k_scale joins sm_scale while v_scale multiplies the output (kv/kv_dtype.h), which is
// the float32 attention over the dequantised cache up to the rounding of those two products.
void cpu_paged_attention(const PagedKVBatch& batch, const AttentionShape& shape, const float* q,
                         const void* pages, float* out, float* lse, ThreadPool* pool = nullptr,
                         const attn::RowKernels* kernels = nullptr);

// out[T, Hq*D] = the attention of q over every level of `step`, merged (base-2 LSE): the window
// masks the own (last) level only, shared levels are read whole (backend.h). pages as
// cpu_paged_attention takes them (the step's K/V already appended).
void cpu_attend_levels(const AttentionStep& step, const AttentionShape& shape, const float* q,
                       const void* pages, float* out);

// (out, lse)[T, Hq] = the attention of q over the shared levels of `step` (all but the last,
// read whole), merged in level order; the step has at least two levels. cpu_attend_levels then
// merges the own level into it (as does the per-head sparse pass, cpu_sparse.h).
void cpu_attend_shared_levels(const AttentionStep& step, const AttentionShape& shape,
                              const float* q, const void* pages, float* out, float* lse);

// Merges state (o_b, lse_b) into (o_a, lse_a) in place, for `rows` rows of `heads` heads of
// head_dim values: the result is the attention over the union of both key sets.
void merge_attention_states(float* o_a, float* lse_a, const float* o_b, const float* lse_b,
                            int64_t rows, int heads, int head_dim);

}  // namespace nc

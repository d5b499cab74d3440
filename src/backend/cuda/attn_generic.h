// Our own paged attention kernel for the head dims FlashInfer's kernels cannot take (today 96,
// Phi-3): FlashInfer's FA2 prefill lays its shared memory out for head dims that are multiples of
// 64 (at 96 it faults on the H100, flashinfer issue #4299) and its CUDA-core decode splits a head
// over a power-of-two number of lanes. Padding the head to 128 would change the KV pages' layout,
// so such shapes run this kernel on every level instead (own causal level, shared non-causal
// levels, decode steps), eagerly and in CUDA graphs.
//
// Semantics are FlashInfer's DefaultAttention on one level (a paged KV batch in CSR form:
// kv_indptr / kv_indices / last_page_len, NHD or HND pages, any page size): row i of an entry
// with qo_len rows and kv_len keys sits at position kv_len - qo_len + i; key j is masked where
// causal and j > that position, or where a window is given (io.window_left >= 0) and
// j < position - window_left. Logits are q.k * sm_scale, or cap * tanh(q.k * sm_scale / cap)
// with a soft cap. GQA: query head h reads kv head h / (Hq / Hk). Outputs: o (bf16 [T, Hq, D]) and,
// when io.lse is not null, the base-2 LSE (log2 of the sum of 2^(logit * log2 e)) that the
// cascade merge (merge_state_inplace) reads; a row with no visible key gets o = 0 and
// LSE = -inf (it merges as an empty state).
//
// The launch needs no scheduling arrays: the grid depends only on the level's row count and
// batch size (so a graph slot's plans all launch alike) and each block finds its (entry, row
// tile) from qo_indptr on the device. No workspace. Planned from host data (PlanQuery); the
// plan (PlanInfo) is {grid tiles, rows per tile, heads per block, head chunks}. Pages may be FP8
// E4M3 codes (kv.fp8): decoded exactly to float; K's scale comes in io.sm_scale, V's
// (io.v_scale) multiplies the output.
#pragma once
#include "backend/cuda/kernels.h"

namespace nc::cuda {

// Whether this kernel serves the head dim (and FlashInfer's attention kernels do not).
bool generic_attention_serves(int head_dim);
PlanInfo generic_attention_plan(const PlanQuery& q);
// qo_indptr: the level's device qo_indptr (batch + 1).
void generic_attention_run(const PlanInfo& plan, const PagedKV& kv, const int32_t* qo_indptr,
                           bool causal, const AttnIO& io, cudaStream_t stream);

}  // namespace nc::cuda

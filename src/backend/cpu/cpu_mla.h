// MLA (multi-head latent attention, DeepSeek-V2/V3) on the CPU, float32: the reference for the
// Backend's MLA ops (backend.h: head_linear, mla_rope_norm, mla_attention) in the absorbed form.
//
// The cache holds one row per token, [c_kv (Dl) | k_pe (Dr)] (KVCacheShape::latent). A query
// head is q_mla = [W_UK^T q_nope (Dl) | rope(q_pe) (Dr)], so its score against token j is
// q_mla . row_j * sm_scale (= q_nope . k_nope_j + q_pe . k_pe_j, times the scale) and its output
// is the softmax-weighted sum of the c_kv parts, in latent space (W_UV maps it to the value).
// Scores and sums run through the same row kernels as ordinary attention (attention_rows.h),
// threaded by (row, head), each pair in a fixed order: batch invariant. LSE is base 2 as in
// cpu_attention.h, so levels (cascade) merge exactly with merge_attention_states.
#pragma once
#include "backend/mla_form.h"  // MlaForm, set_mla_form
#include "core/tensor.h"
#include "kv/paged_kv.h"

namespace nc {

struct AttentionShape;

// nc::Error unless `shape` describes MLA pages (latent_dim > 0, kv.latent, one kv head, the
// head wider than latent_dim, no window or soft cap).
void check_mla_shape(const AttentionShape& shape);

// Writes latent rows [T, head_dim] into the slots named by `batch` (the last q_len slots of
// each entry).
void cpu_mla_append(const PagedKVBatch& batch, const KVCacheShape& kv, const float* latent,
                    float* pages);

// out[T, H*Dl] = MLA of q [T, H*head_dim] over the pages of `batch` (causal or not, as the batch
// says); lse (optional, [T, H]) the base-2 log-sum-exp of each row and head (-inf, output 0, for
// a row without keys).
void cpu_mla_paged_attention(const PagedKVBatch& batch, const AttentionShape& shape, const float* q,
                             const float* pages, float* out, float* lse);

// The whole op: append at the last level, attend every level, merge.
void cpu_mla_attention(const AttentionStep& step, const AttentionShape& shape, const Tensor& q,
                       const Tensor& latent, Tensor pages, Tensor out);

// Backend::mla_attention_values: attn [T, H*Dv] over every level, each entry of a level in the
// absorbed form (as cpu_mla_attention, then W_UV per row) or the expanded one: the entry's keys
// [W_UK c_kv | k_pe] and values W_UV c_kv decompressed once from its pages, then ordinary
// attention of [q_nope | rope(q_pe)] at head sizes Dn + Dr and Dv. Per head, absorbed costs
// pairs (2 Dl + Dr) + 2 rows Dl (Dn + Dv), expanded 2 keys Dl (Dn + Dv) + pairs (Dn + Dr + Dv)
// (pairs: the entry's (row, key) pairs; the projections' multiply-adds count twice, as measured);
// MlaForm::Auto takes the cheaper, so prefill chunks of more than about 2 Dl (Dn + Dv) / (2 Dl -
// Dn - Dv) rows against a long context (341 at DeepSeek's 512 / 128 / 128), and whole prompts
// from their first tokens, go expanded, and decode rows stay absorbed. Both are exact; they
// differ by float32 rounding. Writes q_mla's latent part for the absorbed entries' rows.
void cpu_mla_attention_values(const AttentionStep& step, const AttentionShape& shape,
                              const Tensor& q, Tensor q_mla, const Tensor& latent, Tensor pages,
                              const Tensor& w_uk_t, const Tensor& w_uv, Tensor attn);
// Whether MlaForm::Auto takes the expanded form for entry `entry` of `batch`.
bool cpu_mla_expanded_pays(const PagedKVBatch& batch, int entry, const AttentionShape& shape,
                           int nope_dim, int v_dim);

// Backend::head_linear and Backend::mla_rope_norm on float32 host tensors.
void cpu_head_linear(const Tensor& x, const Tensor& w, Tensor out);
void cpu_mla_rope_norm(const Tensor& q, const Tensor& kv_a, const Tensor& kv_norm, float eps,
                       const Tensor& positions, const Tensor& cos_sin, bool interleaved,
                       int nope_dim, Tensor q_mla, Tensor latent);

}  // namespace nc

// The MLA kernels (mla.cu) as plain host functions, beside kernels.h (the other kernels): kept
// in their own header so that adding them rebuilt none of the FlashInfer translation units.
// Same conventions: work enqueued on `stream`, std::runtime_error on a failed launch.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace nc::cuda {

// DeepSeek's latent attention in the absorbed form (Backend's MLA ops, backend.h).
// out[t, h*so + m] = x[t, h*sx + :k] . w[h, m, :k] (bf16 x [T, H*sx], w [H, m, k], out [T, H*so]).
void head_linear_bf16(const void* x, const void* w, void* out, int64_t tokens, int heads, int sx,
                      int k, int m, int so, cudaStream_t stream);
// Backend::mla_rope_norm: q's rope parts rotated into q_mla [T, H, Dl + Dr] (after Dl), kv_a
// [T, Dl + Dr] into latent = [rmsnorm(c_kv) * norm | rope(k_pe)]; cos_sin f32 [max_pos, Dr].
void mla_rope_norm_bf16(const void* q, const void* kv_a, const void* norm, float eps,
                        const int32_t* positions, const float* cos_sin, bool interleaved,
                        int64_t tokens, int heads, int nope_dim, int rope_dim, int latent_dim,
                        void* q_mla, void* latent, cudaStream_t stream);
// Latent row t [row_dim] into slot dst_slot[t] of page dst_page[t] (pages [P, page_size, row_dim]).
void mla_append_bf16(const void* latent, void* pages, const int32_t* dst_page,
                     const int32_t* dst_slot, int64_t tokens, int page_size, int row_dim,
                     cudaStream_t stream);
// One level of MLA pages in FlashInfer's CSR form, on the device, with each query row's entry.
struct MlaLevel {
  const int32_t* indptr = nullptr;
  const int32_t* indices = nullptr;
  const int32_t* last_page_len = nullptr;
  const int32_t* qo_indptr = nullptr;
  const int32_t* row_entry = nullptr;  // [rows]
  int page_size = 0;
  bool causal = true;
};
// out [rows, H, latent_dim] (bf16) = softmax(q . K^T * sm_scale) V over the level, V = the first
// latent_dim values of each cached row; lse (may be null) [rows, H] base 2 (-inf: no keys).
void mla_attention_bf16(const MlaLevel& level, const void* q, const void* pages, void* out,
                        float* lse, int64_t rows, int heads, int row_dim, int latent_dim,
                        float sm_scale, cudaStream_t stream);
// (o, s) <- merge((o, s), (o_other, s_other)) per (row, head); bf16 o [rows_heads, latent_dim].
void mla_merge_state_bf16(void* o, float* s, const void* o_other, const float* s_other,
                          int64_t rows_heads, int latent_dim, cudaStream_t stream);

}  // namespace nc::cuda

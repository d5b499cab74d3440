// The MLA kernels (mla.cu) as plain host functions, beside kernels.h (the other kernels): kept
// in their own header so that adding them rebuilt none of the FlashInfer translation units.
// Same conventions: work enqueued on `stream`, std::runtime_error on a failed launch.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace nc::cuda {

// DeepSeek's latent attention in the absorbed form (Backend's MLA ops, backend.h; head_linear
// is a cuBLAS strided-batched GEMM, cuda_mla.cc).
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

// FlashInfer's MLA kernels (mla_fi.cu: the FA2-style BatchMLAPagedAttention; mla_fi_sm90.cu:
// its Hopper variant), compiled ahead for DeepSeek's dims only: latent 512, rope 64, bf16 queries,
// pages and outputs. Both run one plan of FlashInfer's MLAPlan (a persistent, cooperative grid
// of one CTA per SM that splits long KV and merges the splits itself in a second phase).
constexpr int kMlaFiLatentDim = 512;
constexpr int kMlaFiRopeDim = 64;
// Bytes of one level's int workspace (FlashInfer's scheduling arrays, a fixed size) and of the
// float workspace (its split-KV partial outputs: fixed by the SM count), on the current device.
size_t mla_fi_int_bytes();
size_t mla_fi_float_bytes();
// Whether the current device runs the Hopper variant (compute capability 9.0).
bool mla_fi_sm90_available();
struct MlaFiPlanArgs {
  const int32_t* qo_indptr_h = nullptr;  // host, batch+1 (query rows)
  const int32_t* kv_indptr_h = nullptr;  // host, batch+1 (pages)
  const int32_t* kv_len_h = nullptr;     // host, batch (tokens)
  int batch_size = 0;
  int num_heads = 0;
  bool causal = true;
  void* int_dev = nullptr;   // device int workspace (mla_fi_int_bytes, 16-byte aligned)
  void* int_host = nullptr;  // its page-locked host staging (same size)
  void* float_dev = nullptr;
  size_t float_bytes = 0;
};
// FlashInfer's MLAPlan: writes the schedule into int_host and returns the plan info (its
// ToVector form); *staged_bytes of int_host must reach int_dev before the run (the caller copies).
std::vector<int64_t> mla_fi_plan(const MlaFiPlanArgs& a, size_t* staged_bytes);
struct MlaFiRunArgs {
  const std::vector<int64_t>* info = nullptr;
  void* int_dev = nullptr;
  void* float_dev = nullptr;
  const void* q = nullptr;      // [rows, heads, 576]: absorbed q_nope (512) | rotated q_pe (64)
  const void* pages = nullptr;  // [P, page_size, 576]: c_kv (512) | k_pe (64) per slot
  const int32_t* kv_indices = nullptr;  // device, the level's page list
  void* out = nullptr;                  // [rows, heads, 512]
  float* lse = nullptr;                 // [rows, heads] base 2, or null
  int page_size = 0;
  int heads = 0;
  float sm_scale = 1.0f;
  bool causal = true;
};
void mla_fi_run_fa2(const MlaFiRunArgs& a, cudaStream_t stream);
void mla_fi_run_sm90(const MlaFiRunArgs& a, cudaStream_t stream);

// The expanded form's data movement (mla_expand.cu; cuda_mla_expanded.h). Widths, strides and
// head dims in bf16 values, multiples of 8; rows 16-byte aligned.
// dst[dst_row[i], :width] = src[src_row[i], :width] for i < rows (a null index: i itself).
void gather_rows_bf16(const void* src, int64_t src_stride, const int32_t* src_row, void* dst,
                      int64_t dst_stride, const int32_t* dst_row, int64_t rows, int width,
                      cudaStream_t stream);
// q_exp [rows, H, Dn + Dr]: row i = [q_nope | rotated q_pe] of step row rows_index[i], from q
// [T, H, Dn + Dr] (its nope part) and q_mla [T, H, Dl + Dr] (its rotated rope part).
void mla_expand_q_bf16(const void* q, const void* q_mla, const int32_t* rows_index, int64_t rows,
                       int heads, int nope_dim, int rope_dim, int latent_dim, void* q_exp,
                       cudaStream_t stream);
// k [keys, H, Dn + Dr]: every head's rope part (after Dn) = the cached row's k_pe, from c_rows
// [keys, Dl + Dr] (the nope parts are the W_UK projection's, written apart).
void mla_expand_k_pe_bf16(const void* c_rows, int64_t keys, int heads, int nope_dim, int rope_dim,
                          int latent_dim, void* k, cudaStream_t stream);

}  // namespace nc::cuda

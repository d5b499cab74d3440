// The device side of the CUDA backend, as plain host functions: the .cu files that implement
// them include FlashInfer and CUDA headers only, so the host code (cuda_backend.cc) compiles with
// the ordinary C++ compiler. bf16 data is passed as void*.
//
// Every function enqueues work on `stream` and throws std::runtime_error when a launch or a
// FlashInfer check fails; the backend turns that into nc::Error.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/cuda/moe_kernels.h"  // mixture-of-experts kernels (moe.cu)

namespace nc::cuda {

// ---- Elementwise, norms, rope, activation (ops.cu) ----
// out[t] = table[ids[t]]; rows whose id is outside [0, vocab) are written as zeros.
void embedding_bf16(const void* table, const int32_t* ids, void* out, int64_t tokens,
                    int64_t hidden, int64_t vocab, cudaStream_t stream);
void rmsnorm_bf16(const void* x, const void* weight, void* out, int rows, int hidden, float eps,
                  cudaStream_t stream);
// residual += x; x = rmsnorm(residual) * weight.
void add_rmsnorm_bf16(void* x, void* residual, const void* weight, int rows, int hidden, float eps,
                      cudaStream_t stream);
// In place, rotate-half; cos_sin: f32 [max_pos, head_dim] (cos | sin). Positions must lie in
// [0, max_pos) (the model guarantees it; they are not checked on the device).
void rope_bf16(void* q, void* k, const float* cos_sin, const int32_t* positions, int tokens,
               int num_qo_heads, int num_kv_heads, int head_dim, cudaStream_t stream);
void silu_and_mul_bf16(const void* gate_up, void* out, int tokens, int inter, cudaStream_t stream);
// out = gelu_tanh(gate_up[:, :I]) * gate_up[:, I:] (PyTorch's approximate="tanh"), float32 math.
void gelu_tanh_and_mul_bf16(const void* gate_up, void* out, int tokens, int inter,
                            cudaStream_t stream);
// x *= s (float32 math; bf16 rounds once); x = cap * tanh(x / cap), cap > 0 (ops_scale.cu).
void scale_bf16(void* x, float s, int64_t n, cudaStream_t stream);
void scale_f32(float* x, float s, int64_t n, cudaStream_t stream);
void soft_cap_f32(float* x, float cap, int64_t n, cudaStream_t stream);
// logits [rows, vocab] (f32): -inf where bit i % 32 of mask[r][i / 32] is clear; mask i32
// [rows, ceil(vocab / 32)] (ops_scale.cu).
void apply_token_bitmask_f32(float* logits, const int32_t* mask, int64_t rows, int64_t vocab,
                             cudaStream_t stream);
// Splits each row of qkv [tokens, (Hq + 2 Hk) * D] into q [tokens, Hq*D], k and v
// [tokens, Hk*D] (all contiguous), RMS-normalises every q head with q_norm [D] and every k head
// with k_norm [D] (null: no norm), then rotates q and k as rope_bf16 does; float32 math, one bf16
// rounding. head_dim 64 or 128; 4-byte aligned bf16 pointers; positions as for rope_bf16
// (qkv_norm_rope.cu).
void qkv_split_norm_rope_bf16(const void* qkv, const void* q_norm, const void* k_norm, float eps,
                              const int32_t* positions, const float* cos_sin, int tokens,
                              int num_qo_heads, int num_kv_heads, int head_dim, void* q, void* k,
                              void* v, cudaStream_t stream);
void add_bf16(void* x, const void* y, int64_t n, cudaStream_t stream);
void add_f32(float* x, const float* y, int64_t n, cudaStream_t stream);
// out[i] = x[rows[i]] for rows of row_bytes bytes (any dtype); rows outside [0, num_rows) give
// zeros.
void gather_rows(const void* x, const int32_t* rows, void* out, int64_t num_out, int64_t num_rows,
                 int64_t row_bytes, cudaStream_t stream);
// dst[pairs[2i]] = src[pairs[2i + 1]] for i < num_pairs (pairs outside the arrays are skipped).
void scatter_ids(const int32_t* src, int64_t num_src, const int32_t* pairs, int64_t num_pairs,
                 int32_t* dst, int64_t num_dst, cudaStream_t stream);
void bf16_to_f32(const void* in, float* out, int64_t n, cudaStream_t stream);
void f16_to_f32(const void* in, float* out, int64_t n, cudaStream_t stream);
void f32_to_bf16(const float* in, void* out, int64_t n, cudaStream_t stream);
// out[i] = low + (high - low) * uniform_hash01(seed, i) (core/random_init.h), as float32
// (bf16 = false) or rounded to bf16.
void fill_uniform(void* out, bool bf16, int64_t n, uint64_t seed, float low, float high,
                  cudaStream_t stream);
// One token per row of float32 logits [rows, vocab]: argmax (ties to the lowest id) where
// inv_temperature[r] is 0, else a draw from softmax(logits * inv_temperature[r]) by the
// Gumbel-max trick with noise uniform_hash01(seeds[r], i). Where `probs` is not null, a sampled
// row r with min_p[r] >= 0 draws only among the ids i with probs[r][i] > 0 and
// probs[r][i] >= min_p[r] * max_j probs[r][j] (probs: what filter_probs left); rows with
// min_p[r] < 0 ignore probs. Without probs, `scratch` holds 8 bytes per row (8-byte aligned).
void sample_rows(const float* logits, int rows, int vocab, const float* inv_temperature,
                 const uint64_t* seeds, const float* probs, const float* min_p, int32_t* out,
                 void* scratch, cudaStream_t stream);

// ---- Top-k / top-p filtering with FlashInfer's sampling kernels (sampling.cu) ----
// Rows per filter_probs call: its workspace grows with rows * vocab.
constexpr int kFilterMaxRows = 64;
// Device bytes of the workspace filter_probs needs for up to `rows` rows.
size_t filter_workspace_bytes(int rows, int vocab);
// probs = softmax(logits[r] / temperature[r]) (temperature 0: uniform), then, where top_k is not
// null, the top-k renormalisation (rows with top_k[r] >= vocab unchanged), then, where top_p is
// not null, the top-p one (rows with top_p[r] >= 1 unchanged); filtered-out ids get probability
// 0. Returns the result's address inside `workspace` (256-byte aligned, filter_workspace_bytes
// big). logits must be 16-byte aligned. A row's result does not depend on the other rows.
const float* filter_probs(const float* logits, int rows, int vocab, const float* temperature,
                          const int32_t* top_k, const float* top_p, void* workspace,
                          cudaStream_t stream);

// ---- Attention (attn_*.cu) ----
// One FlashInfer batch over the layer's page tensor, with its CSR arrays on the device.
struct PagedKV {
  // bf16 [num_pages, 2, page_size, Hk, D] (NHD) or [.., 2, Hk, page_size, D]; FP8 E4M3 codes of
  // the same shape (one byte each) where fp8.
  void* pages = nullptr;
  bool fp8 = false;
  int num_kv_heads = 0;
  int page_size = 0;
  int head_dim = 0;
  bool hnd = false;
  int batch_size = 0;
  int32_t* indptr = nullptr;
  int32_t* indices = nullptr;
  int32_t* last_page_len = nullptr;
};

// Ragged (contiguous) K and V of a batch (AttnKind::RaggedCausal): entry b's keys are rows
// [kv_indptr[b], kv_indptr[b + 1]) of k [N, Hk, head_dim_qk] and v [N, Hk, head_dim_vo], bf16,
// contiguous; its queries are io.q's rows [qo_indptr[b], qo_indptr[b + 1]) with head_dim_qk values
// a head, and its outputs io.o's same rows with head_dim_vo. The causal mask aligns each entry's
// last query with its last key (a chunk after kv_len - q_len earlier keys).
struct RaggedKV {
  const void* k = nullptr;
  const void* v = nullptr;
  int32_t* kv_indptr = nullptr;  // device, batch + 1
  int num_kv_heads = 0;
  int head_dim_qk = 0;
  int head_dim_vo = 0;
};

struct AttnIO {
  const void* q = nullptr;  // bf16 [T, Hq, D]
  void* o = nullptr;        // bf16 [T, Hq, D]
  float* lse = nullptr;     // f32 [T, Hq], base 2; may be null
  int num_qo_heads = 0;
  // The variant's values (AttentionShape): read only by a kernel whose flag is on.
  float sm_scale = 1.0f;  // FP8 pages: the shape's sm_scale times the cache's k_scale
  float logits_soft_cap = 0.0f;
  int window_left = -1;
  // FP8 pages: the cache's v_scale, multiplied into the output (in float, before its bf16
  // rounding); bf16 kernels ignore it.
  float v_scale = 1.0f;
  // Launch the attention kernels (and their split-KV merge) with programmatic dependent launch
  // (pdl.h): each may start while the kernel before it finishes, and waits for it before it reads
  // q, the pages or the indices (FlashInfer's kernels read only plan arrays before their wait).
  bool pdl = false;
};

// FlashInfer's Prefill/DecodePlanInfo in its ToVector() form.
using PlanInfo = std::vector<int64_t>;

struct PlanWorkspace {
  void* float_ws = nullptr;  // device, shared by all plans (runs are stream-ordered)
  size_t float_bytes = 0;
  void* int_ws = nullptr;      // device, this level's region
  void* int_pinned = nullptr;  // page-locked host staging of the same size
  size_t int_bytes = 0;
};

struct AttnKernelTable;  // attn_kernels.h

struct PlanQuery {
  const int32_t* qo_indptr_h = nullptr;  // host, batch+1
  const int32_t* kv_indptr_h = nullptr;  // host, batch+1 (page counts)
  int total_rows = 0;
  int batch_size = 0;
  int num_qo_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int page_size = 0;  // ragged: 1 (kv_indptr_h counts keys)
  // Plans for CUDA graphs: FlashInfer's fixed-grid variant. Decode: the launch shape depends on
  // the batch size only; the KV chunk size is read from device memory. Prefill: it depends on
  // the batch size and total_rows only (KV always split, padding CTAs masked, row count and
  // chunk size read from device memory).
  bool cuda_graph = false;
  // host, batch: tokens in each entry's last page (0 for an empty entry); the sm90 plan needs it.
  const int32_t* kv_last_page_len_h = nullptr;
  // The level's kernel configuration: a decode level is sized and planned through it.
  const AttnKernelTable* kernels = nullptr;
  // The level's sliding window (-1: none; only the own level has one). FlashInfer's prefill plan
  // must see it: its kernel skips the KV tiles before the window and sizes its KV split by it.
  int window_left = -1;
  // The values' head dim where it differs (ragged MLA prefill); 0: head_dim. Last, so that the
  // positional initialisations of the fields above stay as they were.
  int head_dim_vo = 0;
};

// Workspace bytes (float, int) that a plan needs.
void prefill_workspace_size(const PlanQuery& q, size_t* float_bytes, size_t* int_bytes);
// Plans a batch prefill over paged KV; copies its scheduling arrays from int_pinned to int_ws on
// `stream` (the pinned region must not be rewritten before that copy has run).
// The plan runs through its configuration's table (attn_kernels.h).
PlanInfo prefill_plan(const PlanQuery& q, const PlanWorkspace& ws, cudaStream_t stream);
// FlashInfer's Hopper (sm90, wgmma) batch prefill, non-causal only (cascade shared levels);
// attn_prefill_sm90.cu. Available on compute capability 9.0 for head_dim 64 and 128. The plan
// splits long KV into chunks when the level alone would not fill the GPU (then it also needs a
// float workspace); the output LSE is base 2, like the FA2 kernels'.
bool sm90_prefill_available(int num_qo_heads, int num_kv_heads, int head_dim);
// Whether the current device has compute capability 9.0 (Hopper's wgmma kernels), asked once.
bool device_is_sm90();
// The current device's SM count (the sm90 plan's persistent CTAs).
int device_sm_count();
// attn_prefill_sm90_plan.cc: the schedule of backend/sm90_schedule.h for this device.
void sm90_prefill_workspace_size(const PlanQuery& q, size_t* float_bytes, size_t* int_bytes);
PlanInfo sm90_prefill_plan(const PlanQuery& q, const PlanWorkspace& ws, cudaStream_t stream);
void sm90_prefill_run(const PlanInfo& plan, const PlanWorkspace& ws, const PagedKV& kv,
                      const AttnIO& io, cudaStream_t stream);

// The CUDA-core batch decode (one query row per entry): whether it takes the shape (GQA group
// sizes 1..4, 6, 8, 16; power-of-two head dims); planned and run through the configuration's
// table (attn_kernels.h).
bool decode_supported(int num_qo_heads, int num_kv_heads, int head_dim);

// Writes the step's k/v rows into their slots: row i goes to entry batch_indices[i] of `kv` at
// token position positions[i]. k, v: bf16 [nnz, Hk, D] with row stride k_stride/v_stride.
void append_paged_kv(const PagedKV& kv, const void* k, const void* v, int32_t* batch_indices,
                     int32_t* positions, int nnz, int64_t k_stride, int64_t v_stride,
                     cudaStream_t stream);
// The same into FP8 E4M3 pages (kv.fp8): each bf16 value x is stored as the e4m3 code of
// x * inv_k (K) or x * inv_v (V) in float, rounded to nearest even and saturated to +-448
// (__NV_SATFINITE: core/fp8.h's f32_to_e4m3, with the CPU's inv = 1 / scale). One kernel, any
// head dim (attn_append_fp8.cu).
void append_paged_kv_fp8(const PagedKV& kv, const void* k, const void* v, int32_t* batch_indices,
                         int32_t* positions, int nnz, int64_t k_stride, int64_t v_stride,
                         float inv_k, float inv_v, cudaStream_t stream);
// (v, s) <- merge((v, s), (v_other, s_other)), per row and head; bf16 v, base-2 LSE s.
void merge_state_inplace(void* v, float* s, const void* v_other, const float* s_other, int rows,
                         int num_heads, int head_dim, cudaStream_t stream);

// Head dimensions the attention kernels take: 64 and 128 compiled ahead, 96 and 256 compiled at
// run time (attn_registry.h).
inline bool head_dim_supported(int d) {
  return d == 64 || d == 96 || d == 128 || d == 256;
}

}  // namespace nc::cuda

// The CUDA backend's attention plan and its level planner, shared by eager steps and graph slots.
//
// A plan is a list of levels (one FlashInfer batch each: a cascade step's shared levels, then the
// own level, whose slots the step's k/v rows are appended to) plus, with two or more levels, the
// merge states that combine them. Every level's metadata (our CSR arrays and FlashInfer's int
// workspace) lives in one staging region: a page-locked host buffer and its device mirror, at the
// same offsets, described by typed StagedArrays. An eager plan takes its region from the
// context's pool and owns its merge buffers; a graph plan plans into its slot's fixed region and
// the graph scratch (cuda_graph_slots.h) and owns neither.
//
// The level planner (plan_levels, run_level) is the one place that turns a level into FlashInfer
// plan/run calls; it does not care whose region the level's arrays live in.
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/attn_generic.h"
#include "backend/cuda/attn_kernels.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernels.h"

namespace nc::cuda_host {

// `count` values of T at byte `offset` of a staging region.
template <typename T>
struct StagedArray {
  size_t offset = 0;
  size_t count = 0;
  size_t bytes() const { return count * sizeof(T); }
};

// Lays out staged arrays one after another, each starting `align`-byte aligned.
class StagingLayout {
 public:
  explicit StagingLayout(size_t align = 16) : align_(align) {}
  template <typename T>
  StagedArray<T> add(size_t count) {
    const StagedArray<T> a{size_, count};
    size_ = align_up(size_ + a.bytes(), align_);
    return a;
  }
  size_t size() const { return size_; }

 private:
  size_t align_;
  size_t size_ = 0;
};

// The addresses of one staging region (non-owning).
struct StagingView {
  char* host = nullptr;
  char* dev = nullptr;
  StagingView() = default;
  explicit StagingView(const Staging& s)
      : host(static_cast<char*>(s.host)), dev(static_cast<char*>(s.dev)) {}
  template <typename T>
  T* host_ptr(StagedArray<T> a) const {
    return reinterpret_cast<T*>(host + a.offset);
  }
  template <typename T>
  T* dev_ptr(StagedArray<T> a) const {
    return reinterpret_cast<T*>(dev + a.offset);
  }
  // Copies v into the host side of `a` (it must fit).
  void put(StagedArray<int32_t> a, const std::vector<int32_t>& v) const;
};

// Where one level's metadata lives in its plan's staging region.
struct LevelArrays {
  StagedArray<int32_t> qo_indptr, kv_indptr, kv_indices, last_page_len;
  StagedArray<std::byte> int_ws;  // FlashInfer's int workspace (its scheduling arrays)
};

enum class LevelKernel {
  Prefill,      // FlashInfer's FA2 batch prefill (causal or not)
  SM90Prefill,  // FlashInfer's Hopper batch prefill (non-causal levels)
  Decode,       // the decode table (one query row per entry): FlashInfer's CUDA-core batch
                // decode, or over fp8 pages our tensor-core kernel (attn_decode_fp8.cuh)
  Generic,      // our kernel for head dims FlashInfer's cannot take (attn_generic.h), any level
};

struct LevelPlan {
  int batch_size = 0;
  bool causal = true;
  LevelKernel kernel = LevelKernel::Prefill;
  bool side = false;  // runs on the side stream (with the side stream's split-KV scratch)
  // Split-KV scratch fixed for a graph; null: the context's workspace of the level's stream,
  // looked up at each use (it may have grown since the plan was made).
  void* fixed_ws = nullptr;
  size_t fixed_ws_bytes = 0;
  LevelArrays arrays;
  cuda::PlanInfo info;
  // The kernels of the level's configuration (attn_registry.h); null for SM90Prefill and Generic.
  const cuda::AttnKernelTable* table = nullptr;
};

// A cascade step's merge states: the own level's LSE and the shared levels' output and LSE; with
// overlap and two or more shared levels, a second shared state (the side stream merges its
// levels into the first one before the join).
struct CascadeState {
  void* level_out = nullptr;
  float* lse_main = nullptr;
  float* lse_level = nullptr;
  void* level_out2 = nullptr;
  float* lse_level2 = nullptr;
};

// Device buffers from the stream-ordered pool, freed in stream order when this goes away.
class StreamBuffers : NonCopyable {
 public:
  explicit StreamBuffers(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}
  ~StreamBuffers();
  void* get(size_t bytes);  // at least 16 bytes

 private:
  std::shared_ptr<Context> ctx_;
  std::vector<void*> buffers_;
};

class CudaAttentionPlan final : public AttentionPlan {
 public:
  explicit CudaAttentionPlan(std::shared_ptr<Context> c) : ctx(std::move(c)), owned_buffers(ctx) {}

  std::shared_ptr<Context> ctx;
  AttentionShape shape;
  int num_tokens = 0;
  std::vector<LevelPlan> levels;                  // levels.back(): the own level
  StagedArray<int32_t> batch_indices, positions;  // append slots of the step's rows
  StagingView staging;
  bool overlap = false;  // shared levels on the side stream
  CascadeState cascade;
  // An eager plan's merge buffers and staging region (declared in this order: the region goes
  // back to the pool before the buffers are freed). A graph plan's live in its slot.
  StreamBuffers owned_buffers;
  PooledStaging owned_staging;
  // A split mixed step (cuda_attention_split.cc): rows [0, split_rows) run split_head (decode
  // entries), the rest split_tail; `levels` is then empty.
  std::unique_ptr<AttentionPlan> split_head, split_tail;
  int split_rows = 0;

  bool active(const LevelPlan& lp) const { return lp.batch_size > 0 && num_tokens > 0; }
};

// The checks every plan makes on the attention shape (nc::Error naming the bad value); an fp8
// cache (kv.fp8) needs finite scales > 0 and no latent layout.
void validate_attention_shape(const AttentionShape& sh);
// A layer's page tensor for `kv`: on the device, contiguous, bf16, or F8E4M3 where kv.fp8.
void expect_kv_pages(const Tensor& pages, const KVCacheShape& kv, const char* what);
// The kernel of a graph plan's level: `own_kernel` (the graph decode choice, own level) or FA2
// (shared levels), or Generic on every level for the head dims it serves (attn_generic.h).
LevelKernel graph_level_kernel(bool own, int head_dim, LevelKernel own_kernel);
// The configuration of a level's kernels (not SM90Prefill or Generic): the shape's soft cap on
// every level, its window on the own (last) level only (shared levels are never masked, backend.h).
cuda::AttnKernelKey level_key(LevelKernel kernel, bool causal, bool own, const AttentionShape& sh);
// FlashInfer's workspace bytes (float, int) for a level on `kernel` (a decode level is sized
// through q.kernels).
void level_workspace_size(LevelKernel kernel, const cuda::PlanQuery& q, size_t* float_bytes,
                          size_t* int_bytes);
// The int workspace region a level reserves for FlashInfer's `int_bytes`.
inline size_t int_region_bytes(size_t int_bytes) {
  return align_up(int_bytes, 16) + 16;
}
// Writes a level's CSR arrays into the host side of its region.
void stage_level(const StagingView& st, const LevelArrays& a, const PagedKVBatch& in);
// FlashInfer's plan of every active level (queries[l] for level l), in level order, on the
// context's stream; each copies its int workspace to the device itself.
void plan_levels(CudaAttentionPlan& plan, const std::vector<cuda::PlanQuery>& queries);
// Appends the step's k/v (unless `append` is false: already there), runs every level and merges
// them into `out` (Backend::attention).
void run_levels(const CudaAttentionPlan& plan, const Tensor& q, const Tensor& k, const Tensor& v,
                const Tensor& pages, Tensor out, bool append = true);

}  // namespace nc::cuda_host

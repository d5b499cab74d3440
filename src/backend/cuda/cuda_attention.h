// The CUDA backend's attention: eager plans, graph-safe plans, and their run (Backend's
// plan_attention, plan_attention_graph and attention).
//
// Both planners make a CudaAttentionPlan (cuda_attention_plan.h) and plan its levels with the
// same level planner; they differ in where the metadata lives and which kernels may run:
// - an eager plan lays out exactly the step's arrays in a pooled staging region, picks per level
//   the decode, FA2 prefill or Hopper prefill kernel (CudaBackendOptions), uploads its metadata
//   in one copy and allocates its merge buffers in stream order;
// - a graph plan (decode-only steps) plans into a graph slot's fixed region (cuda_graph_slots.h)
//   in FlashInfer's CUDA-graph mode, the own level on the decode kernel (or FA2 where the options
//   or decode_choice.h's graph table say so) and the shared levels on FA2, and returns null when
//   the step cannot be planned that way.
// Cascade levels overlap on the side stream when the options ask for it. Every level's kernels
// come from the attention registry (attn_registry.h) by configuration: the shape's soft cap on
// every level, its window on the own level only (the Hopper prefill, for shared levels, has
// plain and soft-capped variants compiled ahead: attn_prefill_sm90.cu). Head dims FlashInfer's
// kernels cannot take (96) run our own kernel on every level, eager and graph (attn_generic.h).
//
// An FP8 KV cache (shape.kv.fp8; F8E4M3 page tensors) runs the same levels on the fp8 variants of
// the same kernels (AttnKernelKey::kv_fp8, JIT-compiled; attn_generic's for head_dim 96): the
// append quantises (append_paged_kv_fp8), K's scale is folded into each level's softmax scale and
// V's is multiplied into each level's output by the kernel, so merges and graphs need nothing
// else. Never the Hopper prefill (its wgmma takes bf16 K/V with bf16 Q only): FA2 instead.
#pragma once
#include <memory>

#include "backend/cuda/attn_registry.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_graph_slots.h"

namespace nc::cuda_host {

class CudaAttention {
 public:
  CudaAttention(std::shared_ptr<Context> ctx, const CudaBackendOptions& options,
                GraphRunner& graphs, std::shared_ptr<AttnRegistry> registry)
      : ctx_(std::move(ctx)),
        options_(options),
        slots_(ctx_, graphs),
        registry_(std::move(registry)) {}

  std::unique_ptr<AttentionPlan> plan(const AttentionStep& step, const AttentionShape& shape);
  // plan() without the fp8 split of a mixed step: one plan whose levels are the step's, for
  // callers that address a level's arrays (the sparse selection writes the own level's pages).
  std::unique_ptr<AttentionPlan> plan_unsplit(const AttentionStep& step,
                                              const AttentionShape& shape);
  std::unique_ptr<AttentionPlan> plan_for_graph(const AttentionStep& step,
                                                const AttentionShape& shape, int slot_id,
                                                int max_pages);
  // append = false: the step's k/v are already in their slots (the fused prologue put them
  // there: Backend::qkv_split_norm_rope_append, cuda_fused.h).
  void run(const AttentionPlan& plan, const Tensor& q, const Tensor& k, const Tensor& v,
           Tensor kv_pages, Tensor out, bool append = true);
  // After the graphs were dropped: frees graph scratch no graph can read any more.
  void free_retired_scratch() { slots_.free_retired_scratch(); }
  int64_t graph_device_bytes() const { return slots_.device_bytes(); }

 private:
  // A mixed step over fp8 pages split into its decode rows and the rest (cuda_attention_split.cc):
  // how many leading rows go to the decode table (0: no split), the plan, and its run.
  int fp8_decode_rows_to_split(const AttentionStep& step, const AttentionShape& shape) const;
  std::unique_ptr<AttentionPlan> plan_split(const AttentionStep& step, const AttentionShape& shape,
                                            int rows);
  void run_split(const CudaAttentionPlan& plan, const Tensor& q, const Tensor& k, const Tensor& v,
                 Tensor kv_pages, Tensor out, bool append);
  // Eager planning (cuda_attention.cc).
  void lay_out_levels(CudaAttentionPlan& plan, const AttentionStep& step, StagingLayout& lay);
  std::vector<cuda::PlanQuery> choose_kernels(CudaAttentionPlan& plan, const AttentionStep& step,
                                              StagingLayout& lay);
  void allocate_cascade_state(CudaAttentionPlan& plan, int num_shared);
  // Graph planning (cuda_graph_plan.cc).
  bool pad_graph_levels(const AttentionStep& step, const AttentionShape& shape, int max_pages,
                        std::vector<PagedKVBatch>& padded) const;
  void carve_graph_cascade_state(CudaAttentionPlan& plan, const GraphSlot& slot, void** shared_ws);
  void upload_graph_metadata(const GraphSlot& slot, const std::vector<PagedKVBatch>& shared,
                             const PagedKVBatch& own);
  // Kernel choice.
  LevelKernel level_kernel(const PagedKVBatch& in, const AttentionShape& sh) const;
  // The own level's kernel in a graph-safe plan of `batch` entries (Decode or Prefill).
  LevelKernel graph_own_kernel(const AttentionShape& sh, int batch) const;
  bool use_sm90_kernel(const AttentionShape& sh, const PagedKVBatch& level) const;
  // The level's kernels from the registry (compiled ahead or at run time).
  const cuda::AttnKernelTable* kernel_table(LevelKernel kernel, bool causal, bool own,
                                            const AttentionShape& sh) const;

  std::shared_ptr<Context> ctx_;
  CudaBackendOptions options_;
  GraphSlots slots_;
  std::shared_ptr<AttnRegistry> registry_;
};

// An fp8 cache's decode levels: 1 through the decode table (our FP8 kernel where it serves),
// 0 on FlashInfer's prefill kernel, -1 not an fp8 cache (cuda_attention.cc).
int fp8_takes_decode_table(const AttentionShape& sh);

// The plan's levels' kernels (tests and benchmarks, via cuda_backend.h; a split mixed step's
// decode rows first); nc::Error naming `what` when the plan is not a CUDA plan.
std::vector<LevelKernel> plan_level_kernels(const AttentionPlan& plan, const char* what);

}  // namespace nc::cuda_host

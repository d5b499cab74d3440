// The CUDA backend's MLA plan (cuda_mla.h): what run_mla reads, whoever owns the memory.
//
// An eager plan (plan_mla) owns device copies of its arrays (`owned`; with FlashInfer's kernels
// also a staging region of their int workspaces) and leaves the merge buffers null: run_mla
// takes them from the stream-ordered pool, and FlashInfer's split-KV scratch from the context's
// float workspace (fi_float null). A graph plan (MlaGraphSlots,
// mla_graph.h) points into its slot's fixed region and fixed merge buffers, which never move
// while the slot keeps its shape, so a graph captured with one plan of the slot replays
// correctly after any later plan of it.
#pragma once
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/mla_fi_host.h"
#include "backend/cuda/mla_kernels.h"

namespace nc::cuda_host {

struct MlaExpandedPart;  // cuda_mla_expanded.cc

class CudaMlaPlan final : public AttentionPlan {
 public:
  AttentionShape shape;
  int64_t num_tokens = 0;
  std::vector<cuda::MlaLevel> levels;  // levels.back(): the own level (the append slots)
  MlaKernel kernel = MlaKernel::Fallback;
  std::vector<FiLevel> fi;   // FlashInfer's kernels: each level's plan (else empty)
  void* fi_float = nullptr;  // their split-KV scratch fixed for a graph; null: ctx->attn_ws
  // [num_tokens]: each token's append slot; null: the pages already hold the rows' latents (the
  // expanded form's absorbed rest, cuda_mla_expanded.cc).
  const int32_t* dst_page = nullptr;
  const int32_t* dst_slot = nullptr;
  // Cascade merge state ([T, H] f32 twice, [T, H * latent_dim] bf16); null: from the pool.
  float* lse = nullptr;
  float* lse_level = nullptr;
  void* o_level = nullptr;
  std::vector<Tensor> owned;  // an eager plan's device arrays
  PooledStaging fi_staging;   // an eager plan's FlashInfer int workspaces
  // The entries that mla_attention_values runs in the expanded form, and an absorbed plan of the
  // others (cuda_mla_expanded.h); null: every entry absorbed.
  std::shared_ptr<const MlaExpandedPart> expanded;
};

}  // namespace nc::cuda_host

// The host side of FlashInfer's MLA kernels (mla_kernels.h, mla_fi*.cu) for the CUDA backend's
// MLA plans (mla_plan.h): which kernel a shape takes, one level planned by FlashInfer's MLAPlan,
// and a plan's levels run and merged.
//
// The rule (mla_kernel): FlashInfer's kernels take DeepSeek's dims only (latent 512 + rope 64,
// bf16 pages): the Hopper kernel on compute capability 9.0, its FA2 kernel elsewhere; any other
// shape (the tiny test models) runs our CUDA-core kernels (mla.cu), which stay the fallback.
// NC_MLA_KERNEL=fallback|fa2|sm90 forces one where the shape allows it (benchmarks, checks).
//
// Each level is planned padded to `entries` entries (empty ones: no rows, no keys) with
// entries >= the step's rows: MLAPlan then sees the same average packed row count (the step's
// rows times heads over entries, never above the head count) and picks the same grid, one or
// two CTAs per cluster by the head count alone, for an eager plan and a graph slot's plan of the
// same step (so a replay computes exactly what the eager step computes) and for every plan of a
// graph slot (whose captured launch keeps its grid).
//
// The shared levels' partial outputs are merged by their LSE through FlashInfer's merge_state,
// as the standard path's cascade does, one (row, head) per CTA: its launch puts all heads of a
// row in one CTA of 32 x heads threads, which 128 heads (V3) would overflow.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/mla_kernels.h"

namespace nc::cuda_host {

enum class MlaKernel { Fallback, FA2, SM90 };
const char* mla_kernel_name(MlaKernel k);

// The kernel a plan of `shape` takes (the rule above).
MlaKernel mla_kernel(const AttentionShape& shape);

// Whether MLAPlan's fixed work arrays (16384 items) hold the level's schedule, padded to
// `entries` entries (a bound: one work item per query tile plus at most one split per SM); a
// step with a level that does not fit runs the fallback (a prefill chunk of more than ~15k
// tokens at 128 heads, ~60k at 16). The bound also keeps the kernels' 32-bit query and output
// offsets (row x heads x 576) in range, which would overflow past ~58k rows at 128 heads.
bool fi_level_fits(const PagedKVBatch& level, int entries, int heads);

// One level as FlashInfer runs it: its plan info, its int workspace on the device, the page list.
struct FiLevel {
  std::vector<int64_t> info;
  void* int_dev = nullptr;
  const int32_t* kv_indices = nullptr;
  bool causal = true;
};

// Plans `level` padded to `entries` entries into the int workspace (int_host, int_dev: each
// mla_fi_int_bytes()); returns the level with kv_indices unset and sets *staged_bytes (the
// prefix of int_host to copy to int_dev before the run).
FiLevel plan_fi_level(const PagedKVBatch& level, int entries, int heads, int page_size,
                      void* int_host, void* int_dev, const FloatWorkspace& ws,
                      size_t* staged_bytes);

struct FiRun {
  const std::vector<FiLevel>* levels = nullptr;
  MlaKernel kernel = MlaKernel::FA2;
  void* float_ws = nullptr;
  const void* q = nullptr;
  const void* pages = nullptr;
  void* out = nullptr;
  // Two or more levels: the merge state ([rows, heads] f32 twice, [rows, heads, 512] bf16).
  float* lse = nullptr;
  float* lse_level = nullptr;
  void* o_level = nullptr;
  int64_t rows = 0;
  int heads = 0;
  int page_size = 0;
  float sm_scale = 1.0f;
};
// Runs every level (the first into out, each later one into o_level, merged into out).
void run_fi_levels(const FiRun& r, cudaStream_t stream);

}  // namespace nc::cuda_host

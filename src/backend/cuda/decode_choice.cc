// The decode-kernel table of DecodeKernel::Auto (decode_choice.h).
#include "backend/cuda/decode_choice.h"

#include <vector>

namespace nc::cuda_host {
namespace {

bool in_range(int v, int lo, int hi) {
  return v >= lo && (hi == 0 || v <= hi);
}

// First match wins; no match: CUDA cores. Rows from `nc_gpu_bench decode-choice` on the H200
// (2026-12-05, bench/gpu/results/h200_2026-12-05/decode_choice.md), head_dim 128: tensor cores
// (the FA2 prefill kernel with one query row per entry) win 1.1-2.7x from GQA group 4 up except
// at batch <= 8 and short contexts (a tie), and 1.05-1.07x at group 2 with large batches and long
// contexts; CUDA cores win or tie elsewhere. Other head dims keep the H100's rule (2026-11):
// tensor cores from group 4 up.
constexpr DecodeRule kDecodeRules[] = {
    // group     head_dim  batch       context      kernel
    {8, 0, /**/ 128, /**/ 0, 0, /**/ 0, 0, /**/ DecodeKernel::TensorCores},
    {4, 0, /**/ 128, /**/ 9, 0, /**/ 0, 0, /**/ DecodeKernel::TensorCores},
    {4, 0, /**/ 128, /**/ 0, 8, /**/ 5121, 0, /**/ DecodeKernel::TensorCores},
    {4, 0, /**/ 128, /**/ 0, 8, /**/ 0, 0, /**/ DecodeKernel::CudaCores},
    {2, 2, /**/ 128, /**/ 97, 0, /**/ 5121, 0, /**/ DecodeKernel::TensorCores},
    {2, 2, /**/ 128, /**/ 193, 0, /**/ 1281, 0, /**/ DecodeKernel::TensorCores},
    {4, 0, /**/ 0, /**/ 0, 0, /**/ 0, 0, /**/ DecodeKernel::TensorCores},
};

// Graph-safe plans (one plan serves every context of its batch size, so contexts are ignored).
// Same measurement, graph columns: tensor cores 1.3-2.9x at group 4 and 8 for every batch (the
// CUDA-core graph plan reads K/V at 0.5-0.7 of the copy rate there: the 8B shape's 0.64 of issue
// #16), 1.05-1.06x at group 2 from batch 41; other head dims as the eager rule.
const std::vector<DecodeRule> kGraphDecodeRules = {
    {4, 0, 128, 0, 0, 0, 0, DecodeKernel::TensorCores},
    {2, 2, 128, 41, 0, 0, 0, DecodeKernel::TensorCores},
    {4, 0, 0, 0, 0, 0, 0, DecodeKernel::TensorCores},
};

DecodeKernel first_match(std::span<const DecodeRule> rules, int group, int head_dim, int batch,
                         int ctx, bool ignore_ctx) {
  for (const DecodeRule& r : rules) {
    if (in_range(group, r.min_group, r.max_group) && (r.head_dim == 0 || r.head_dim == head_dim) &&
        in_range(batch, r.min_batch, r.max_batch) &&
        (ignore_ctx || in_range(ctx, r.min_ctx, r.max_ctx)))
      return r.kernel;
  }
  return DecodeKernel::CudaCores;
}

}  // namespace

std::span<const DecodeRule> decode_rules() {
  return kDecodeRules;
}

DecodeKernel auto_decode_kernel(int group, int head_dim, int batch, int mean_ctx) {
  return first_match(kDecodeRules, group, head_dim, batch, mean_ctx, false);
}

std::span<const DecodeRule> graph_decode_rules() {
  return kGraphDecodeRules;
}

DecodeKernel graph_decode_kernel(int group, int head_dim, int batch) {
  return first_match(kGraphDecodeRules, group, head_dim, batch, 0, true);
}

}  // namespace nc::cuda_host

// The decode-kernel table of DecodeKernel::Auto (decode_choice.h).
#include "backend/cuda/decode_choice.h"

#include <vector>

namespace nc::cuda_host {
namespace {

bool in_range(int v, int lo, int hi) {
  return v >= lo && (hi == 0 || v <= hi);
}

// First match wins. The default is the rule measured on the H100 (2026-11): tensor cores (the
// FA2 prefill kernel with one query row per entry) from GQA group 4 up, CUDA cores below.
// Replace or refine the rows from `nc_gpu_bench decode-choice` (its "suggested rules" table).
constexpr DecodeRule kDecodeRules[] = {
    // group     head_dim  batch   context  kernel
    {4, 0, /**/ 0, /**/ 0, 0, /**/ 0, 0, /**/ DecodeKernel::TensorCores},
};

// Graph-safe plans (context ranges ignored). Empty: CUDA cores, the kernel graphs always ran.
// Fill it from decode-choice's "graph cc" and "graph tc" columns, e.g.
//   {4, 0, 128, 64, 0, 0, 0, DecodeKernel::TensorCores},
const std::vector<DecodeRule> kGraphDecodeRules = {};

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

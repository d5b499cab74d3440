// Which kernel decodes over FP8 pages (host code and the JIT-compiled decode object read the same
// rule): our tensor-core kernel (attn_decode_fp8.cuh) for head dims 64 and 128 and GQA groups up to
// 16 without a sliding window or a logits soft cap; FlashInfer's otherwise, or everywhere with
// NC_FP8_DECODE_IMPL=fi (an A/B against the kernels used before, docs/benchmarks.md).
#pragma once
#include <cstdlib>
#include <cstring>

namespace nc::cuda {

inline bool own_fp8_decode_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("NC_FP8_DECODE_IMPL");
    return e == nullptr || std::strcmp(e, "fi") != 0;
  }();
  return on;
}

inline bool own_fp8_decode_serves(int group, int head_dim, bool window, bool soft_cap) {
  return own_fp8_decode_enabled() && (head_dim == 64 || head_dim == 128) && group >= 1 &&
         group <= 16 && !window && !soft_cap;
}

}  // namespace nc::cuda

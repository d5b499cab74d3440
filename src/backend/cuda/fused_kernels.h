// The attention prologue with the K/V append folded in (qkv_norm_rope.cu): qkv_split_norm_rope_bf16
// (kernels.h) that also writes every token's rotated k heads and its v heads into their page
// slots, as append_paged_kv does after it (the same bf16 values, bit for bit): one kernel fewer
// per layer. Plain host declarations.
//
// KvAppendTarget: the layer's page tensor (bf16 [num_pages, 2, page_size, Hk, D] NHD, or
// [num_pages, 2, Hk, page_size, D] HND) and the plan's device arrays: token t goes to entry
// batch_indices[t] at position positions[t] of that entry, that is page
// kv_indices[kv_indptr[entry] + position / page_size], slot position % page_size. The arrays
// must be on the device before the kernel runs (stream order); nothing is checked on the device.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace nc::cuda {

struct KvAppendTarget {
  void* pages = nullptr;
  int page_size = 0;
  bool hnd = false;
  const int32_t* kv_indptr = nullptr;
  const int32_t* kv_indices = nullptr;
  const int32_t* batch_indices = nullptr;
  const int32_t* positions = nullptr;
};

void qkv_split_norm_rope_append_bf16(const void* qkv, const void* q_norm, const void* k_norm,
                                     float eps, const int32_t* positions, const float* cos_sin,
                                     int tokens, int num_qo_heads, int num_kv_heads, int head_dim,
                                     void* q, void* k, void* v, const KvAppendTarget& append,
                                     cudaStream_t stream);

}  // namespace nc::cuda

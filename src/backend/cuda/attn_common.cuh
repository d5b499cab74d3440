// Shared by the attention translation units: FlashInfer's types for bf16 paged attention.
#pragma once
#include <cuda_bf16.h>

#include <flashinfer/attention/default_decode_params.cuh>
#include <flashinfer/attention/default_prefill_params.cuh>
#include <flashinfer/attention/scheduler.cuh>
#include <flashinfer/attention/variants.cuh>
#include <flashinfer/page.cuh>
#include <stdexcept>
#include <string>

#include "backend/cuda/kernels.h"

namespace nc::cuda {

using bf16 = __nv_bfloat16;
// Plain softmax attention: no custom mask, no sliding window, no soft cap, no ALiBi.
using Variant = flashinfer::DefaultAttention<false, false, false, false>;
using PrefillParams = flashinfer::BatchPrefillPagedParams<bf16, bf16, bf16, int32_t>;
using DecodeParams = flashinfer::BatchDecodeParams<bf16, bf16, bf16, int32_t>;

inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// Our page tensor holds K and V of a page next to each other ([P, 2, ...]), so the page stride
// is twice the K (or V) block and V starts one block after K.
inline flashinfer::paged_kv_t<bf16, int32_t> make_paged_kv(const PagedKV& kv) {
  const int64_t hd = kv.head_dim;
  const int64_t half = int64_t(kv.page_size) * kv.num_kv_heads * hd;
  // Strides of the [page, dim1, dim2] view in FlashInfer's order: NHD (n, h), HND (h, n).
  const int64_t strides[3] = {2 * half, kv.hnd ? kv.page_size * hd : kv.num_kv_heads * hd, hd};
  bf16* k = static_cast<bf16*>(kv.pages);
  return flashinfer::paged_kv_t<bf16, int32_t>(
      kv.num_kv_heads, kv.page_size, kv.head_dim, kv.batch_size,
      kv.hnd ? flashinfer::QKVLayout::kHND : flashinfer::QKVLayout::kNHD, k, k + half, strides,
      kv.indices, kv.indptr, kv.last_page_len);
}

template <typename T>
T* at_offset(void* base, int64_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

// Runs a FlashInfer call, turning its exceptions and error codes into std::runtime_error.
template <typename F>
void fi_call(const char* what, F&& f) {
  cudaError_t e;
  try {
    e = f();
  } catch (const std::exception& ex) {
    throw std::runtime_error(std::string(what) + ": " + ex.what());
  }
  check_cuda(e, what);
}

}  // namespace nc::cuda

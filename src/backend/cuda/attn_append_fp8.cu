// The K/V append of an FP8 KV cache (kernels.h, append_paged_kv_fp8): the quantisation is the
// append itself, one kernel writing e4m3 codes straight into the page slots (FlashInfer's append
// copies one dtype into the same dtype, so it cannot serve here).
//
// Grid (rows, kv heads); thread t converts features 2t and 2t + 1 of the row's K and V head and
// stores each pair as one 2-byte word (head_dim is even, so every pair starts at an even byte of
// a page: cudaMalloc'd pages are aligned). The conversion is __nv_cvt_float_to_fp8 with
// __NV_SATFINITE and __NV_E4M3 of (float)x * inv_scale: core/fp8.h's f32_to_e4m3 of the same
// float product, which the CPU backend computes (cpu_append_kv_fp8), so both write the same bytes.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <string>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/kernels.h"

namespace nc::cuda {
namespace {

struct AppendGeometry {
  uint8_t* pages;
  const int32_t* indptr;
  const int32_t* indices;
  int64_t half;  // bytes of one page's K (or V) block
  int page_size, num_kv_heads, head_dim;
  bool hnd;
};

__device__ inline uint16_t e4m3_pair(float a, float b) {
  const uint16_t lo = __nv_cvt_float_to_fp8(a, __NV_SATFINITE, __NV_E4M3);
  const uint16_t hi = __nv_cvt_float_to_fp8(b, __NV_SATFINITE, __NV_E4M3);
  return uint16_t(lo | (hi << 8));  // little endian: feature 2t at the lower byte
}

__global__ void __launch_bounds__(128)
    append_kv_fp8_kernel(AppendGeometry g, const __nv_bfloat16* __restrict__ k,
                         const __nv_bfloat16* __restrict__ v,
                         const int32_t* __restrict__ batch_indices,
                         const int32_t* __restrict__ positions, int64_t k_stride, int64_t v_stride,
                         float inv_k, float inv_v) {
  const int i = blockIdx.x, h = blockIdx.y, d = 2 * threadIdx.x;
  if (d >= g.head_dim) return;
  const int pos = positions[i];
  const int page = g.indices[g.indptr[batch_indices[i]] + pos / g.page_size];
  const int slot = pos % g.page_size;
  const int64_t in_page = g.hnd ? (int64_t(h) * g.page_size + slot) * g.head_dim
                                : (int64_t(slot) * g.num_kv_heads + h) * g.head_dim;
  uint8_t* kdst = g.pages + int64_t(page) * 2 * g.half + in_page + d;
  const __nv_bfloat16* ks = k + i * k_stride + int64_t(h) * g.head_dim + d;
  const __nv_bfloat16* vs = v + i * v_stride + int64_t(h) * g.head_dim + d;
  // Scalar loads: k and v may be row views of a wider tensor with no 4-byte alignment promise.
  *reinterpret_cast<uint16_t*>(kdst) =
      e4m3_pair(__bfloat162float(ks[0]) * inv_k, __bfloat162float(ks[1]) * inv_k);
  *reinterpret_cast<uint16_t*>(kdst + g.half) =
      e4m3_pair(__bfloat162float(vs[0]) * inv_v, __bfloat162float(vs[1]) * inv_v);
}

}  // namespace

void append_paged_kv_fp8(const PagedKV& kv, const void* k, const void* v, int32_t* batch_indices,
                         int32_t* positions, int nnz, int64_t k_stride, int64_t v_stride,
                         float inv_k, float inv_v, cudaStream_t stream) {
  if (nnz == 0) return;
  if (kv.head_dim % 2 != 0 || kv.head_dim > 256)
    throw std::runtime_error("append paged kv (fp8): head_dim " + std::to_string(kv.head_dim) +
                             " is not even or above 256");
  AppendGeometry g;
  g.pages = static_cast<uint8_t*>(kv.pages);
  g.indptr = kv.indptr;
  g.indices = kv.indices;
  g.half = int64_t(kv.page_size) * kv.num_kv_heads * kv.head_dim;
  g.page_size = kv.page_size;
  g.num_kv_heads = kv.num_kv_heads;
  g.head_dim = kv.head_dim;
  g.hnd = kv.hnd;
  const dim3 grid{unsigned(nnz), unsigned(kv.num_kv_heads)};
  append_kv_fp8_kernel<<<grid, unsigned(kv.head_dim / 2), 0, stream>>>(
      g, static_cast<const __nv_bfloat16*>(k), static_cast<const __nv_bfloat16*>(v), batch_indices,
      positions, k_stride, v_stride, inv_k, inv_v);
  check_launch("append paged kv (fp8)");
}

}  // namespace nc::cuda

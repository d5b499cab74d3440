// K/V append and attention-state merge for head dims that FlashInfer's own kernels do not
// dispatch (they take 64, 128, 256 and 512): plain one-thread-per-feature kernels, used by
// attn.cu for e.g. head_dim 96. Same contracts as append_paged_kv / merge_state_inplace.
#include "backend/cuda/attn_common.cuh"

namespace nc::cuda {
namespace {

// Grid (rows, kv heads), one thread per feature.
__global__ void append_kv_any_kernel(flashinfer::paged_kv_t<bf16, int32_t> kv,
                                     const bf16* __restrict__ k, const bf16* __restrict__ v,
                                     const int32_t* __restrict__ batch_indices,
                                     const int32_t* __restrict__ positions, int64_t k_stride,
                                     int64_t v_stride) {
  const uint32_t i = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
  uint32_t page_iter, entry;
  kv.page_size.divmod(kv.indptr[batch_indices[i]] * kv.page_size + positions[i], page_iter, entry);
  *kv.get_k_ptr(page_iter, h, entry, d) = k[i * k_stride + h * kv.head_dim + d];
  *kv.get_v_ptr(page_iter, h, entry, d) = v[i * v_stride + h * kv.head_dim + d];
}

// Grid (rows, heads), one thread per feature; base-2 LSE as FlashInfer's.
__global__ void merge_state_any_kernel(bf16* __restrict__ v, float* __restrict__ s,
                                       const bf16* __restrict__ v_other,
                                       const float* __restrict__ s_other, int head_dim) {
  const int64_t rh = int64_t(blockIdx.x) * gridDim.y + blockIdx.y;
  const float s1 = s[rh], s2 = s_other[rh];
  const float m = fmaxf(s1, s2);
  if (m == -INFINITY) return;  // both states empty: nothing to merge (uniform over the block)
  const float w1 = exp2f(s1 - m), w2 = exp2f(s2 - m);
  const int64_t at = rh * head_dim + threadIdx.x;
  v[at] = __float2bfloat16((__bfloat162float(v[at]) * w1 + __bfloat162float(v_other[at]) * w2) /
                           (w1 + w2));
  __syncthreads();  // every thread has read s before thread 0 rewrites it
  if (threadIdx.x == 0) s[rh] = m + log2f(w1 + w2);
}

}  // namespace

void append_paged_kv_any_dim(const PagedKV& kv, const void* k, const void* v,
                             int32_t* batch_indices, int32_t* positions, int nnz, int64_t k_stride,
                             int64_t v_stride, cudaStream_t stream) {
  const dim3 grid{unsigned(nnz), unsigned(kv.num_kv_heads)};
  append_kv_any_kernel<<<grid, unsigned(kv.head_dim), 0, stream>>>(
      make_paged_kv(kv), static_cast<const bf16*>(k), static_cast<const bf16*>(v), batch_indices,
      positions, k_stride, v_stride);
  check_launch("append paged kv");
}

void merge_state_any_dim(void* v, float* s, const void* v_other, const float* s_other, int rows,
                         int num_heads, int head_dim, cudaStream_t stream) {
  const dim3 grid{unsigned(rows), unsigned(num_heads)};
  merge_state_any_kernel<<<grid, unsigned(head_dim), 0, stream>>>(
      static_cast<bf16*>(v), s, static_cast<const bf16*>(v_other), s_other, head_dim);
  check_launch("merge state");
}

}  // namespace nc::cuda

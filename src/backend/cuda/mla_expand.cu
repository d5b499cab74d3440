// The data movement of MLA's expanded form (mla_kernels.h; cuda_mla_expanded.h): row gathers and
// scatters, the expanded queries [q_nope | rope(q_pe)] and the keys' shared rope part. Every
// width is a multiple of 8 bf16 values and every row starts 16-byte aligned, so each thread
// moves 16 bytes at a time.
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/mla_kernels.h"

namespace nc::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 256;
constexpr int kVec = 8;  // bf16 values in 16 bytes

unsigned blocks_for(int64_t items) {
  const int64_t b = (items + kThreads - 1) / kThreads;
  return unsigned(b < 65535 * 16 ? b : 65535 * 16);  // grid-stride beyond
}

__device__ __forceinline__ void copy16(const bf16* src, bf16* dst) {
  *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
}

__global__ void gather_rows_kernel(const bf16* src, int64_t src_stride, const int32_t* src_row,
                                   bf16* dst, int64_t dst_stride, const int32_t* dst_row,
                                   int64_t rows, int vecs) {
  const int64_t n = rows * vecs;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / vecs, c = (i % vecs) * kVec;
    const int64_t s = src_row ? src_row[r] : r, d = dst_row ? dst_row[r] : r;
    copy16(src + s * src_stride + c, dst + d * dst_stride + c);
  }
}

// Qe[i, h] = [q[row[i], h, :Dn] | q_mla[row[i], h, Dl : Dl + Dr]].
__global__ void expand_q_kernel(const bf16* q, const bf16* q_mla, const int32_t* row, bf16* q_exp,
                                int64_t rows, int heads, int nope_dim, int rope_dim,
                                int latent_dim) {
  const int dqk = nope_dim + rope_dim, vecs = dqk / kVec;
  const int64_t n = rows * heads * vecs;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t rh = i / vecs, r = rh / heads;
    const int h = int(rh % heads), c = int(i % vecs) * kVec;
    const int64_t t = row[r];
    const bf16* src = c < nope_dim ? q + (t * heads + h) * dqk + c
                                   : q_mla + (t * heads + h) * (latent_dim + rope_dim) +
                                         latent_dim + (c - nope_dim);
    copy16(src, q_exp + rh * dqk + c);
  }
}

// k[n, h, Dn : Dn + Dr] = c[n, Dl : Dl + Dr] for every head h.
__global__ void expand_k_pe_kernel(const bf16* c_rows, int64_t keys, int heads, int nope_dim,
                                   int rope_dim, int latent_dim, bf16* k) {
  const int vecs = rope_dim / kVec, dqk = nope_dim + rope_dim;
  const int64_t n = keys * heads * vecs;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t kh = i / vecs, key = kh / heads;
    const int c = int(i % vecs) * kVec;
    copy16(c_rows + key * (latent_dim + rope_dim) + latent_dim + c, k + kh * dqk + nope_dim + c);
  }
}

}  // namespace

void gather_rows_bf16(const void* src, int64_t src_stride, const int32_t* src_row, void* dst,
                      int64_t dst_stride, const int32_t* dst_row, int64_t rows, int width,
                      cudaStream_t stream) {
  if (rows == 0 || width == 0) return;
  if (width % kVec != 0 || src_stride % kVec != 0 || dst_stride % kVec != 0)
    throw std::runtime_error("gather_rows: width and strides must be multiples of 8");
  const int vecs = width / kVec;
  gather_rows_kernel<<<blocks_for(rows * vecs), kThreads, 0, stream>>>(
      static_cast<const bf16*>(src), src_stride, src_row, static_cast<bf16*>(dst), dst_stride,
      dst_row, rows, vecs);
  check_launch("gather_rows");
}

void mla_expand_q_bf16(const void* q, const void* q_mla, const int32_t* rows_index, int64_t rows,
                       int heads, int nope_dim, int rope_dim, int latent_dim, void* q_exp,
                       cudaStream_t stream) {
  if (rows == 0) return;
  if (nope_dim % kVec != 0 || rope_dim % kVec != 0 || latent_dim % kVec != 0)
    throw std::runtime_error("mla_expand_q: head dims must be multiples of 8");
  const int64_t items = rows * heads * ((nope_dim + rope_dim) / kVec);
  expand_q_kernel<<<blocks_for(items), kThreads, 0, stream>>>(
      static_cast<const bf16*>(q), static_cast<const bf16*>(q_mla), rows_index,
      static_cast<bf16*>(q_exp), rows, heads, nope_dim, rope_dim, latent_dim);
  check_launch("mla_expand_q");
}

void mla_expand_k_pe_bf16(const void* c_rows, int64_t keys, int heads, int nope_dim, int rope_dim,
                          int latent_dim, void* k, cudaStream_t stream) {
  if (keys == 0) return;
  if (nope_dim % kVec != 0 || rope_dim % kVec != 0 || latent_dim % kVec != 0)
    throw std::runtime_error("mla_expand_k_pe: head dims must be multiples of 8");
  const int64_t items = keys * heads * (rope_dim / kVec);
  expand_k_pe_kernel<<<blocks_for(items), kThreads, 0, stream>>>(static_cast<const bf16*>(c_rows),
                                                                 keys, heads, nope_dim, rope_dim,
                                                                 latent_dim, static_cast<bf16*>(k));
  check_launch("mla_expand_k_pe");
}

}  // namespace nc::cuda

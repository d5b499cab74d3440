// The streaming window's re-rotation of cached keys (kv_shift_kernels.h): one block per (listed
// page, slot), one thread per (head, frequency) pair of the slot's keys. The angle is the
// difference of the two float32 products the rope table is made of (rounded as the host's, no
// contraction), its cos and sin and the rotation in double, then one rounding to bf16.
#include <cuda_bf16.h>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/kv_shift_kernels.h"

namespace nc::cuda {
namespace {

__global__ void shift_keys(KeyShiftPages p, const int32_t* __restrict__ shifts,
                           const float* __restrict__ inv_freq) {
  const int row = blockIdx.x, slot = blockIdx.y, half = p.head_dim / 2;
  const int32_t page = shifts[3 * row], from = shifts[3 * row + 1], to = shifts[3 * row + 2];
  auto* base = static_cast<__nv_bfloat16*>(p.pages) + int64_t(page) * p.page_elems;
  for (int t = threadIdx.x; t < p.num_kv_heads * half; t += blockDim.x) {
    const int h = t / half, i = t % half;
    const float inv = inv_freq[i];
    const double a =
        double(__fmul_rn(float(from + slot), inv)) - double(__fmul_rn(float(to + slot), inv));
    double s, c;
    sincos(a, &s, &c);
    const int64_t head = p.hnd ? (int64_t(h) * p.page_size + slot) * p.head_dim
                               : (int64_t(slot) * p.num_kv_heads + h) * p.head_dim;
    __nv_bfloat16* x = base + head;
    const double x1 = __bfloat162float(x[i]), x2 = __bfloat162float(x[i + half]);
    x[i] = __float2bfloat16_rn(float(x1 * c + x2 * s));
    x[i + half] = __float2bfloat16_rn(float(x2 * c - x1 * s));
  }
}

}  // namespace

void shift_key_positions_bf16(const KeyShiftPages& p, const int32_t* shifts, int num_shifts,
                              const float* inv_freq, cudaStream_t stream) {
  if (num_shifts == 0) return;
  const int pairs = p.num_kv_heads * (p.head_dim / 2);
  const int threads = pairs >= 256 ? 256 : ((pairs + 31) / 32) * 32;
  shift_keys<<<dim3(num_shifts, p.page_size), threads, 0, stream>>>(p, shifts, inv_freq);
  check_launch("shift_key_positions");
}

}  // namespace nc::cuda

// The kernels of logprobs_kernels.h.
#include <cfloat>
#include <cmath>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/logprobs_kernels.h"

namespace nc::cuda {
namespace {

constexpr int kThreads = 256;

// (value descending, id ascending): whether (a, ia) ranks before (b, ib). An empty candidate is
// id -1 and ranks last.
__device__ bool ranks_before(float a, int32_t ia, float b, int32_t ib) {
  if (ib < 0) return ia >= 0;
  if (ia < 0) return false;
  return a > b || (a == b && ia < ib);
}

// The reduction of v over the block (every thread gets it); `identity` fills the lanes of warp 0
// beyond the block's warps.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T identity, T* shared) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? shared[lane] : identity;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  const T out = shared[0];
  __syncthreads();
  return out;
}

// One block a row: the row maximum, the sum of exp(x - max) in double, then the k best ids. Each
// thread keeps its own k best of the ids it reads (sorted, in local memory); the block then takes
// the best head among the threads k times, advancing the winner's list.
__global__ void __launch_bounds__(kThreads)
    top_k_kernel(const float* __restrict__ logits, int vocab, const int32_t* __restrict__ ks,
                 LogprobSlot* __restrict__ slots) {
  const int r = blockIdx.x;
  const int k = ks[r];
  if (k < 0) return;
  const float* x = logits + int64_t(r) * vocab;
  __shared__ double dshared[kThreads / 32];
  __shared__ float fshared[kThreads / 32];
  __shared__ unsigned long long wshared[kThreads / 32];

  float mx = -INFINITY;
  float best[kMaxTopLogprobs];
  int32_t best_id[kMaxTopLogprobs];
  for (int j = 0; j < k; ++j) best_id[j] = -1, best[j] = -INFINITY;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const float v = x[i];
    mx = fmaxf(mx, v);
    if (k > 0 && ranks_before(v, i, best[k - 1], best_id[k - 1])) {
      int j = k - 1;
      for (; j > 0 && ranks_before(v, i, best[j - 1], best_id[j - 1]); --j)
        best[j] = best[j - 1], best_id[j] = best_id[j - 1];
      best[j] = v, best_id[j] = i;
    }
  }
  mx = block_reduce(
      mx, [](float a, float b) { return fmaxf(a, b); }, -INFINITY, fshared);
  double sum = 0;
  if (isfinite(mx))
    for (int i = threadIdx.x; i < vocab; i += kThreads) sum += exp(double(x[i] - mx));
  sum = block_reduce(
      sum, [](double a, double b) { return a + b; }, 0.0, dshared);
  const float lse = isfinite(mx) ? mx + float(log(sum)) : mx;
  auto logprob = [&](float v) { return isfinite(lse) ? v - lse : -INFINITY; };

  // Merge: a candidate is packed as (rank key, thread) so that one max-reduction finds the winner:
  // the key orders by value, then by lower id; the thread breaks no ties (ids are distinct).
  int head = 0;
  for (int j = 0; j < k; ++j) {
    const bool has = head < k && best_id[head] >= 0;
    const float v = has ? best[head] : 0.0f;
    const int32_t id = has ? best_id[head] : -1;
    // Order-preserving float bits (larger float -> larger unsigned), then the id inverted.
    unsigned bits = __float_as_uint(v);
    bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
    const unsigned long long key =
        has ? (static_cast<unsigned long long>(bits) << 32) | unsigned(0x7fffffff - id) : 0ull;
    const unsigned long long win = block_reduce(
        key, [](unsigned long long a, unsigned long long b) { return a > b ? a : b; }, 0ull,
        wshared);
    if (win == 0ull) {  // fewer ids than k in the row
      if (threadIdx.x == 0) slots[r].top_ids[j] = -1;
      continue;
    }
    const int32_t win_id = 0x7fffffff - int32_t(win & 0xffffffffull);
    if (has && id == win_id) ++head;
    if (threadIdx.x == 0) {
      slots[r].top_ids[j] = win_id;
      slots[r].top_logprobs[j] = logprob(x[win_id]);
    }
  }
  if (threadIdx.x == 0) slots[r].lse = lse;
}

__global__ void bias_kernel(float* __restrict__ logits, int vocab, const int32_t* __restrict__ row,
                            const int32_t* __restrict__ id, const float* __restrict__ value,
                            int entries, float* __restrict__ raw) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= entries) return;
  float* p = logits + int64_t(row[j]) * vocab + id[j];
  raw[j] = *p;
  *p += value[j];
}

__global__ void token_kernel(const float* __restrict__ logits, int rows, int vocab,
                             const int32_t* __restrict__ ks, const int32_t* __restrict__ ids,
                             const int32_t* __restrict__ bias_begin,
                             const int32_t* __restrict__ bias_id, const float* __restrict__ raw,
                             LogprobSlot* __restrict__ slots) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows || ks[r] < 0) return;
  const int32_t t = ids[r];
  float v = logits[int64_t(r) * vocab + t];
  if (bias_begin)
    for (int j = bias_begin[r]; j < bias_begin[r + 1]; ++j)
      if (bias_id[j] == t) v = raw[j];
  const float lse = slots[r].lse;
  slots[r].token_logprob = isfinite(lse) ? v - lse : -INFINITY;
}

}  // namespace

void logprob_top_k(const float* logits, int rows, int vocab, const int32_t* k, LogprobSlot* slots,
                   cudaStream_t stream) {
  if (rows == 0) return;
  top_k_kernel<<<rows, kThreads, 0, stream>>>(logits, vocab, k, slots);
  check_launch("logprob_top_k");
}

void apply_logit_bias(float* logits, int vocab, const int32_t* row, const int32_t* id,
                      const float* value, int entries, float* raw, cudaStream_t stream) {
  if (entries == 0) return;
  bias_kernel<<<(entries + 127) / 128, 128, 0, stream>>>(logits, vocab, row, id, value, entries,
                                                         raw);
  check_launch("apply_logit_bias");
}

void token_logprobs(const float* logits, int rows, int vocab, const int32_t* k, const int32_t* ids,
                    const int32_t* bias_begin, const int32_t* bias_id, const float* raw,
                    LogprobSlot* slots, cudaStream_t stream) {
  if (rows == 0) return;
  token_kernel<<<(rows + 127) / 128, 128, 0, stream>>>(logits, rows, vocab, k, ids, bias_begin,
                                                       bias_id, raw, slots);
  check_launch("token_logprobs");
}

}  // namespace nc::cuda

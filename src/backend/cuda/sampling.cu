// filter_probs (kernels.h): FlashInfer's softmax with per-row temperature and its top-k / top-p
// renormalisation kernels, with per-row parameters. The draw itself is sample_rows (ops.cu):
// FlashInfer's sampling kernels seed their Philox streams with the row's position in the batch
// (curand_init(seed, row, offset)), so a request's token would depend on where it sits in the
// batch; the Gumbel-max draw with uniform_hash01(seed, id) does not.
#include <flashinfer/sampling.cuh>
#include <flashinfer/topk.cuh>
#include <stdexcept>
#include <string>
#include <utility>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/kernels.h"

namespace nc::cuda {
namespace {

namespace fs = flashinfer::sampling;

constexpr size_t kAlign = 256;

size_t round_up(size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

// The workspace, in order: two probability buffers [rows, vocab] (ping-pong between the steps),
// the softmax's per-slice partial results, the top-k kernel's per-group states (zeroed before
// each call: its groups synchronise through them).
struct Layout {
  size_t probs_bytes, softmax_bytes, states_bytes;
  explicit Layout(int rows, int vocab) {
    probs_bytes = round_up(size_t(rows) * size_t(vocab) * sizeof(float));
    // OnlineSoftmax splits rows of >= 24576 ids into slices of 8192 for batches of <= 128 rows.
    const size_t slices = (size_t(vocab) + 8191) / 8192;
    softmax_bytes = round_up(size_t(rows) * slices * sizeof(fs::PartialSoftmaxResult) + kAlign);
    // The top-k kernel runs at most one group of CTAs per row.
    states_bytes = round_up(size_t(rows) * sizeof(fs::RadixRowState));
  }
  size_t total() const { return 2 * probs_bytes + softmax_bytes + states_bytes; }
};

}  // namespace

size_t filter_workspace_bytes(int rows, int vocab) {
  return Layout(rows, vocab).total();
}

const float* filter_probs(const float* logits, int rows, int vocab, const float* temperature,
                          const int32_t* top_k, const float* top_p, void* workspace,
                          cudaStream_t stream) {
  if (rows == 0) return nullptr;
  if (rows > kFilterMaxRows)
    throw std::runtime_error("filter_probs: " + std::to_string(rows) + " rows, at most " +
                             std::to_string(kFilterMaxRows));
  const Layout l(rows, vocab);
  char* ws = static_cast<char*>(workspace);
  float* cur = reinterpret_cast<float*>(ws);
  float* next = reinterpret_cast<float*>(ws + l.probs_bytes);
  void* softmax_ws = ws + 2 * l.probs_bytes;
  auto* states = reinterpret_cast<fs::RadixRowState*>(ws + 2 * l.probs_bytes + l.softmax_bytes);
  const auto n = uint32_t(rows), d = uint32_t(vocab);
  // FlashInfer's signatures take non-const pointers; these buffers are only read.
  fi_call("OnlineSoftmax", [&] {
    return fs::OnlineSoftmax<float>(const_cast<float*>(logits), cur, n, d,
                                    const_cast<float*>(temperature), 1.0f, softmax_ws,
                                    l.softmax_bytes, /*enable_pdl=*/false, stream);
  });
  if (top_k) {
    check_cuda(cudaMemsetAsync(states, 0, l.states_bytes, stream), "top-k state reset");
    // Deterministic: the group sum of a row split over several CTAs is then independent of
    // their arrival order, so the same logits give the same probabilities every time.
    fi_call("RadixTopKRenormProbMultiCTA", [&] {
      return fs::RadixTopKRenormProbMultiCTA<float, int32_t>(cur, next, const_cast<int32_t*>(top_k),
                                                             n, /*top_k_val=*/d, d, states,
                                                             /*deterministic=*/true, stream);
    });
    std::swap(cur, next);
  }
  if (top_p) {
    fi_call("TopPRenormProb", [&] {
      return fs::TopPRenormProb<float>(cur, next, const_cast<float*>(top_p), n, 1.0f, d, stream);
    });
    std::swap(cur, next);
  }
  return cur;
}

}  // namespace nc::cuda

// The CUDA backend's GEMM: Backend::linear, bf16 inputs, bf16 or float32 output (e.g. logits, so
// that near-ties are not rounded away), optional bias in the output's dtype.
//
// A plan is made once per shape, bias/no bias, output dtype and pointer alignment, and reused. It
// lists candidate kernels (gemm_candidates.h): cuBLASLt's heuristic pick first (the only one when
// tuning is off or the shape has more rows than tuning covers), then the heuristic's next
// algorithms, split-K variants of the first ones and, for a few rows, our GEMV kernel. The choice
// is made once per row bucket (rows rounded up to a power of two) and the rest of the key: at the
// first eager use in a bucket every candidate is timed on the call's own tensors and the fastest
// is kept, in memory and in a file per GPU (gemm_tune_cache.h) that later processes read instead
// of timing again; other row counts of the bucket take that choice rebuilt for their shape (the
// heuristic's pick where cuBLASLt rejects it). A call made while the stream is being captured
// into a CUDA graph never times: it runs the heuristic pick and leaves the plan untuned, so a
// later eager call tunes it. Everything runs on the context's stream with its cuBLASLt workspace.
//
// Environment (read once per backend): tuning is opt-in, NC_GEMM_TUNE=1 (measured on the H200,
// 2026-12-05, `nc_gpu_bench gemm-decode`: the tuned picks were within noise of cuBLASLt's
// heuristic except the GEMV kernel at one row, which untuned plans take by rule, so the timing
// at start-up bought nothing); NC_GEMM_TUNE_MAX_ROWS (default 256) is the most rows a tuned shape
// has; NC_GEMM_TOP_N (default 12) the heuristic algorithms asked for.
#pragma once
#include <compare>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/gemm_candidates.h"
#include "backend/cuda/gemm_tune_cache.h"

namespace nc {
class Backend;
}

namespace nc::cuda_host {

struct GemmTuning {
  bool enabled = false;  // NC_GEMM_TUNE=1: measured no gain beyond the GEMV at one row (H200)
  int max_rows = 256;
  int top_n = 12;
  static GemmTuning from_env();
};

class CublasLtGemm : NonCopyable {
 public:
  explicit CublasLtGemm(std::shared_ptr<Context> ctx, GemmTuning tuning = GemmTuning::from_env())
      : ctx_(std::move(ctx)), tuning_(tuning) {}
  ~CublasLtGemm();

  // out = x @ w^T (+ bias). x: [N, K]; w: [M, K]; bias: [M] or undefined; out: [N, M].
  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor out);

  // Benchmarks and tests: the candidates of this call's plan (index 0: the heuristic's pick),
  // running candidate i once, and the index linear() runs now (-1: not tuned yet).
  std::vector<std::string> candidate_names(const Tensor& x, const Tensor& w, const Tensor& bias,
                                           const Tensor& out);
  void run_candidate(size_t i, const Tensor& x, const Tensor& w, const Tensor& bias, Tensor out);
  int chosen(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out);

 private:
  struct Key {
    int64_t n, m, k;
    bool bias;
    bool f32_out;
    int align;
    auto operator<=>(const Key&) const = default;
  };
  struct Plan {
    LtLayouts lt;
    std::vector<GemmCandidate> candidates;
    int chosen = -1;  // -1: not tuned yet (runs candidate 0)
  };

  Plan& plan_for(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out);
  void restore_choice(const Key& key, Plan& g, const GemmArgs& args);
  void tune(const Key& key, Plan& g, const GemmArgs& args);
  std::string cache_key(const Key& key) const;
  GemmTuneCache& cache();

  std::shared_ptr<Context> ctx_;
  GemmTuning tuning_;
  std::map<Key, Plan> plans_;
  std::unique_ptr<GemmTuneCache> cache_;  // made at the first tuned shape
};

// The CUDA backend's GEMM (defined in cuda_backend.cc); nc::Error when `b` is not the CUDA
// backend.
CublasLtGemm& cuda_gemm(Backend& b);

}  // namespace nc::cuda_host

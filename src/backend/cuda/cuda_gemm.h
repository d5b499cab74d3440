// The CUDA backend's GEMM: Backend::linear through cuBLASLt, bf16 inputs, bf16 or float32 output
// (e.g. logits, so that near-ties are not rounded away), optional bias in the output's dtype.
//
// A cuBLASLt plan (descriptors, layouts and the heuristic's algorithm) is made once per shape,
// bias/no bias, output dtype and pointer alignment, and reused; the matmul runs on the
// context's stream with the context's cuBLASLt workspace.
#pragma once
#include <compare>
#include <map>
#include <memory>

#include "backend/cuda/cuda_context.h"

namespace nc::cuda_host {

class CublasLtGemm : NonCopyable {
 public:
  explicit CublasLtGemm(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}
  ~CublasLtGemm();

  // out = x @ w^T (+ bias). x: [N, K]; w: [M, K]; bias: [M] or undefined; out: [N, M].
  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor out);

 private:
  struct Key {
    int64_t n, m, k;
    bool bias;
    bool f32_out;
    int align;
    auto operator<=>(const Key&) const = default;
  };
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };

  void run(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, int64_t N, int64_t M,
           int64_t K);
  Plan make_plan(const Key& key) const;
  void pick_algorithm(const Key& key, Plan& g) const;

  std::shared_ptr<Context> ctx_;
  std::map<Key, Plan> plans_;
};

}  // namespace nc::cuda_host

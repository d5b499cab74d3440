// The candidate kernels of one GEMM shape (CublasLtGemm, cuda_gemm.h) and their launch.
//
// Contract: make_lt_layouts builds the cuBLASLt descriptors of out[N, M] = x[N, K] @ w[M, K]^T
// (+ bias) in the column-major view out^T = W^T' x^T; list_candidates returns, in this order, the
// heuristic's algorithms (at most `top_n`, the first being what an untuned plan runs), split-K
// variants of the first few that cublasLtMatmulAlgoCheck accepts within the workspace, and the
// GEMV kernel (gemv_kernels.h) where the rows, K and alignment allow. launch_candidate enqueues
// one on the context's stream and returns cuBLASLt's status (GEMV: success or an nc::Error).
// candidate_config writes a candidate's configuration as text ("gemv", or "lt id=.. tile=..
// stages=.. splitk=.. ..." with every cuBLASLt algorithm setting) and candidate_from_config
// rebuilds it for another shape's layouts, false when that shape cannot run it (cuBLASLt's
// check, the workspace, or the GEMV kernel's contract).
#pragma once
#include <string>
#include <vector>

#include "backend/cuda/cuda_context.h"

namespace nc::cuda_host {

struct LtLayouts {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
};

struct GemmCandidate {
  bool gemv = false;
  cublasLtMatmulAlgo_t algo{};
  std::string name;  // e.g. "lt#0 id=31 tile=20 splitk=1", "lt#1 splitk=4", "gemv"
};

// One call's operands.
struct GemmArgs {
  const void* x;
  const void* w;
  const void* bias;  // null: none
  void* out;
  int64_t n, m, k;
  bool f32_out;
  int align;  // bytes all pointers are aligned to
};

LtLayouts make_lt_layouts(const GemmArgs& a);
void destroy_lt_layouts(LtLayouts& l);

std::vector<GemmCandidate> list_candidates(const Context& ctx, const LtLayouts& lt,
                                           const GemmArgs& a, int top_n, bool extras);

std::string candidate_config(const GemmCandidate& c);
bool candidate_from_config(const Context& ctx, const LtLayouts& lt, const GemmArgs& a,
                           const std::string& config, GemmCandidate* out);

cublasStatus_t launch_candidate(const Context& ctx, const LtLayouts& lt, const GemmCandidate& c,
                                const GemmArgs& a);

}  // namespace nc::cuda_host

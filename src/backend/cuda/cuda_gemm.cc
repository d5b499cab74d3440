// cuBLASLt GEMM of the CUDA backend (cuda_gemm.h).
#include "backend/cuda/cuda_gemm.h"

#include <cstdint>
#include <initializer_list>

namespace nc::cuda_host {
namespace {

int pointer_alignment(std::initializer_list<const void*> ptrs) {
  int a = 256;
  for (const void* p : ptrs) {
    if (!p) continue;
    while (a > 1 && reinterpret_cast<uintptr_t>(p) % uintptr_t(a) != 0) a /= 2;
  }
  return a;
}

template <typename T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& value,
              const char* what) {
  cublas_check(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(value)), what);
}

}  // namespace

CublasLtGemm::~CublasLtGemm() {
  for (auto& [key, g] : plans_) {
    cublasLtMatrixLayoutDestroy(g.a);
    cublasLtMatrixLayoutDestroy(g.b);
    cublasLtMatrixLayoutDestroy(g.c);
    cublasLtMatmulDescDestroy(g.desc);
  }
}

void CublasLtGemm::linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor out) {
  const int64_t N = x.dim(0), K = x.dim(1), M = w.dim(0);
  NC_CHECK(w.dim(1) == K, "linear: input has {} features, weight {} expects {}", K,
           shape_str(w.shape()), w.dim(1));
  NC_CHECK(K > 0, "linear: no input features");
  out.expect_shape({N, M}, "linear output");
  expect_bf16(x, "linear input");
  expect_bf16(w, "linear weight");
  expect_cuda(out, "linear output");
  NC_CHECK(out.dtype() == DType::BF16 || out.dtype() == DType::F32,
           "linear: output dtype {} not supported (bf16, f32)", dtype_name(out.dtype()));
  for (const Tensor* t : {&x, &w, static_cast<const Tensor*>(&out)}) t->expect_contiguous("linear");
  if (bias.defined()) {
    bias.expect_shape({M}, "linear bias");
    expect_cuda(bias, "linear bias");
    bias.expect_dtype(out.dtype(), "linear bias");
  }
  if (N == 0 || M == 0) return;
  run(x, w, bias, out, N, M, K);
}

void CublasLtGemm::run(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, int64_t N,
                       int64_t M, int64_t K) {
  const int align = pointer_alignment({x.data(), w.data(), out.data(), bias.data()});
  const Key key{N, M, K, bias.defined(), out.dtype() == DType::F32, align};
  auto it = plans_.find(key);
  if (it == plans_.end()) it = plans_.emplace(key, make_plan(key)).first;
  Plan& g = it->second;
  if (bias.defined())
    set_desc(g.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias.data(), "bias pointer");
  const float alpha = 1.0f, beta = 0.0f;
  // Column-major view: out^T [M, N] = W [M, K] (stored as K x M, transposed) * x^T [K, N].
  cublas_check(cublasLtMatmul(ctx_->lt, g.desc, &alpha, w.data(), g.a, x.data(), g.b, &beta,
                              out.data(), g.c, out.data(), g.c, &g.algo, ctx_->lt_workspace,
                              ctx_->lt_workspace_bytes, ctx_->stream),
               "cublasLtMatmul");
}

CublasLtGemm::Plan CublasLtGemm::make_plan(const Key& key) const {
  Plan g;
  cublas_check(cublasLtMatmulDescCreate(&g.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
  set_desc(g.desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T, "transa");
  set_desc(g.desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N, "transb");
  if (key.bias) {
    set_desc(g.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS, "epilogue");
    const cudaDataType_t bt = key.f32_out ? CUDA_R_32F : CUDA_R_16BF;
    set_desc(g.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, bt, "bias type");
  }
  cublas_check(cublasLtMatrixLayoutCreate(&g.a, CUDA_R_16BF, key.k, key.m, key.k), "layout a");
  cublas_check(cublasLtMatrixLayoutCreate(&g.b, CUDA_R_16BF, key.k, key.n, key.k), "layout b");
  cublas_check(
      cublasLtMatrixLayoutCreate(&g.c, key.f32_out ? CUDA_R_32F : CUDA_R_16BF, key.m, key.n, key.m),
      "layout c");
  pick_algorithm(key, g);
  return g;
}

// The heuristic's first algorithm for the plan's layouts, within the context's workspace and
// the pointers' alignment.
void CublasLtGemm::pick_algorithm(const Key& key, Plan& g) const {
  cublasLtMatmulPreference_t pref;
  cublas_check(cublasLtMatmulPreferenceCreate(&pref), "preference");
  const uint64_t ws = ctx_->lt_workspace_bytes;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof(ws));
  const uint32_t al = uint32_t(key.align);
  for (auto attr :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof(al));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(ctx_->lt, g.desc, g.a, g.b, g.c, g.c,
                                                           pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  NC_CHECK(st == CUBLAS_STATUS_SUCCESS && found > 0,
           "linear: cuBLASLt has no bf16 algorithm for [{}, {}] x [{}, {}]^T (status {})", key.n,
           key.k, key.m, key.k, int(st));
  g.algo = result.algo;
}

}  // namespace nc::cuda_host

// The CUDA backend's FP8 linear (fp8_gemm.h).
#include "backend/cuda/fp8_gemm.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "backend/cuda/fp8_kernels.h"

namespace nc::cuda_host {
namespace {

int env_rows(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  NC_CHECK(end != v && *end == '\0' && n >= 0 && n <= 4096, "{}={} is not a row count (0..4096)",
           name, v);
  return int(n);
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

void check_args(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out) {
  expect_bf16(x, "fp8 linear input");
  expect_cuda(w, "fp8 linear weight");
  expect_cuda(out, "fp8 linear output");
  w.expect_dtype(DType::F8E4M3, "fp8 linear weight");
  NC_CHECK(x.ndim() == 2 && w.ndim() == 2, "fp8 linear: input {} and weight {} must be matrices",
           shape_str(x.shape()), shape_str(w.shape()));
  const int64_t N = x.dim(0), K = x.dim(1), M = w.dim(0);
  NC_CHECK(w.dim(1) == K, "fp8 linear: input has {} features, weight {} expects {}", K,
           shape_str(w.shape()), w.dim(1));
  NC_CHECK(K > 0, "fp8 linear: no input features");
  out.expect_shape({N, M}, "fp8 linear output");
  NC_CHECK(out.dtype() == DType::BF16 || out.dtype() == DType::F32,
           "fp8 linear: output dtype {} not supported (bf16, f32)", dtype_name(out.dtype()));
  for (const Tensor* t : {&x, &w, &out}) t->expect_contiguous("fp8 linear");
  if (bias.defined()) {
    bias.expect_shape({M}, "fp8 linear bias");
    expect_cuda(bias, "fp8 linear bias");
    bias.expect_dtype(out.dtype(), "fp8 linear bias");
  }
}

template <typename T>
bool try_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& value) {
  return cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(value)) == CUBLAS_STATUS_SUCCESS;
}

// cuBLASLt's descriptors of out^T [M, N] = W [M, K] (stored K x M column-major, transposed: the
// "TN" layout FP8 requires) times x^T [K, N]. lt-outer: the outer-vector scales of A (M row
// scales) and B (N activation scales), and the bias epilogue where asked. lt-epilogue: no scale
// attributes (unit scales: the sums come out unscaled for fp8_scale_output) and no bias. Fast
// accumulation off on both (fp8_gemm.h says why) unless `fast` (benchmarks). False where this
// cuBLASLt refuses a setting (an older library without outer-vector scales).
bool fp8_layouts(int64_t n, int64_t m, int64_t k, bool f32_out, Fp8Path path, bool fuse_bias,
                 bool fast, LtLayouts* g) {
  const int32_t outer = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
  const cudaDataType_t ot = f32_out ? CUDA_R_32F : CUDA_R_16BF;
  const int8_t fast_accum = fast ? 1 : 0;
  if (cublasLtMatmulDescCreate(&g->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS ||
      !try_desc(g->desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T) ||
      !try_desc(g->desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N) ||
      !try_desc(g->desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, fast_accum))
    return false;
  if (path == Fp8Path::LtOuter && (!try_desc(g->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, outer) ||
                                   !try_desc(g->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, outer)))
    return false;
  if (fuse_bias && (!try_desc(g->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS) ||
                    !try_desc(g->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int32_t(ot))))
    return false;
  return cublasLtMatrixLayoutCreate(&g->a, CUDA_R_8F_E4M3, k, m, k) == CUBLAS_STATUS_SUCCESS &&
         cublasLtMatrixLayoutCreate(&g->b, CUDA_R_8F_E4M3, k, n, k) == CUBLAS_STATUS_SUCCESS &&
         cublasLtMatrixLayoutCreate(&g->c, ot, m, n, m) == CUBLAS_STATUS_SUCCESS;
}

// Destroys what fp8_layouts created (its members stay null until created).
void destroy_partial(LtLayouts& g) {
  if (g.a) cublasLtMatrixLayoutDestroy(g.a);
  if (g.b) cublasLtMatrixLayoutDestroy(g.b);
  if (g.c) cublasLtMatrixLayoutDestroy(g.c);
  if (g.desc) cublasLtMatmulDescDestroy(g.desc);
  g = LtLayouts{};
}

// The heuristic's first algorithm within the workspace, for 16-byte aligned operands; false when
// it has none (an older cuBLASLt, a GPU without outer-vector scaling, an unsupported epilogue).
// Host-side only (nothing is enqueued), so it may run while a graph is being captured.
bool heuristic_algo(const Context& ctx, const LtLayouts& lt, cublasLtMatmulAlgo_t* algo) {
  cublasLtMatmulPreference_t pref;
  cublas_check(cublasLtMatmulPreferenceCreate(&pref), "fp8 preference");
  const uint64_t ws = ctx.lt_workspace_bytes;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof(ws));
  const uint32_t al = 16;
  for (auto attr :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof(al));
  cublasLtMatmulHeuristicResult_t r{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(ctx.lt, lt.desc, lt.a, lt.b, lt.c, lt.c, pref, 1, &r, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found < 1 || r.state != CUBLAS_STATUS_SUCCESS) return false;
  *algo = r.algo;
  return true;
}

}  // namespace

void check_fp8_capability(const std::string& gpu, int major, int minor) {
  NC_CHECK_AS(ErrorKind::Unsupported, major > 8 || (major == 8 && minor >= 9),
              "fp8 weights need FP8 tensor cores (compute capability 8.9 or newer); {} has "
              "compute capability {}.{} (--quantization none keeps the weights unquantised)",
              gpu, major, minor);
}

const char* fp8_path_name(Fp8Path p) {
  switch (p) {
    case Fp8Path::Auto:
      return "auto";
    case Fp8Path::Gemv:
      return "gemv";
    case Fp8Path::LtOuter:
      return "lt-outer";
    case Fp8Path::LtEpilogue:
      return "lt-epilogue";
  }
  return "?";
}

Fp8Gemm::Fp8Gemm(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {
  gemv_max_rows_ = env_rows("NC_FP8_GEMV_MAX_ROWS", gemv_max_rows_);
  const auto on = [](const char* name) {
    const char* v = std::getenv(name);
    return v == nullptr || std::string(v) != "0";
  };
  fuse_mlp_ = on("NC_FP8_FUSED_MLP");
  fuse_norm_ = on("NC_FP8_FUSED_NORM");
  cuda_check(cudaDeviceGetAttribute(&cc_major_, cudaDevAttrComputeCapabilityMajor, ctx_->device),
             "compute capability");
  cuda_check(cudaDeviceGetAttribute(&cc_minor_, cudaDevAttrComputeCapabilityMinor, ctx_->device),
             "compute capability");
}

Fp8Gemm::~Fp8Gemm() {
  for (auto& [key, p] : plans_)
    if (p.ok) destroy_lt_layouts(p.lt);
}

void Fp8Gemm::set_fast_accum_for_bench(bool on) {
  if (on == fast_accum_) return;
  // Work already enqueued with these plans is unaffected: cublasLtMatmul reads its descriptors
  // during the call, not when the work runs.
  for (auto& [key, p] : plans_)
    if (p.ok) destroy_lt_layouts(p.lt);
  plans_.clear();
  fast_accum_ = on;
}

int64_t Fp8Gemm::chunk_rows(int64_t k) {
  const int64_t r =
      std::clamp<int64_t>(kScratchCodeBytes / std::max<int64_t>(k, 1), 1, kMaxChunkRows);
  return r >= 16 ? r / 16 * 16 : r;  // whole 16-row groups keep every chunk's pointers aligned
}

int64_t Fp8Gemm::scratch_bytes() const {
  return scratch_.defined() ? int64_t(scratch_.nbytes()) : 0;
}

void Fp8Gemm::ensure_scratch() {
  if (scratch_.defined()) return;
  scratch_ = device_alloc(ctx_, {kScratchCodeBytes + 2 * kMaxChunkRows * int64_t(sizeof(float))},
                          DType::F8E4M3);
}

Tensor Fp8Gemm::upload(const Fp8Weight& w) {
  check_fp8_capability(ctx_->name, cc_major_, cc_minor_);
  const std::vector<uint8_t> packed = pack_fp8_weight(w);  // checks sizes and scales
  void* p = nullptr;
  const cudaError_t e = cudaMallocAsync(&p, packed.size(), ctx_->stream);
  NC_CHECK(e == cudaSuccess,
           "upload_fp8_linear: cannot allocate {} bytes on the GPU for [{}, {}]: {}", packed.size(),
           w.rows, w.cols, cudaGetErrorString(e));
  std::shared_ptr<void> storage(p, [ctx = ctx_](void* q) { cudaFreeAsync(q, ctx->stream); });
  // From pageable memory the call returns once `packed` has been staged.
  cuda_check(cudaMemcpyAsync(p, packed.data(), packed.size(), cudaMemcpyHostToDevice, ctx_->stream),
             "upload_fp8_linear");
  ensure_scratch();
  return Tensor::adopt(std::move(storage), {w.rows, w.cols}, DType::F8E4M3, Device::CUDA);
}

// cuBLASLt's FP8 GEMM needs K and M multiples of 16 and 16-byte aligned operands (the weight's
// codes and row scales, the output rows of every chunk; the quantised x lives in the scratch).
bool Fp8Gemm::lt_shape_ok(const Tensor& x, const Tensor& w, const Tensor& out) const {
  return lt_shape_ok(x.dim(1), w, out);
}

bool Fp8Gemm::lt_shape_ok(int64_t K, const Tensor& w, const Tensor& out) const {
  const int64_t M = w.dim(0);
  return K % 16 == 0 && M % 16 == 0 && aligned16(w.data()) && aligned16(fp8_row_scales(w)) &&
         aligned16(out.data()) && chunk_rows(K) % 16 == 0;
}

Fp8Gemm::Plan& Fp8Gemm::plan_for(const Key& key) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  Plan p;
  // lt-outer with a bias: the bias epilogue first, then without it (a separate add).
  const bool try_fused = key.path == Fp8Path::LtOuter && key.bias;
  for (int attempt = try_fused ? 0 : 1; attempt < 2 && !p.ok; ++attempt) {
    const bool fuse = attempt == 0;
    LtLayouts lt;
    if (fp8_layouts(key.n, key.m, key.k, key.f32_out, key.path, fuse, fast_accum_, &lt) &&
        heuristic_algo(*ctx_, lt, &p.algo)) {
      p.lt = lt, p.ok = true, p.bias_fused = fuse;
    } else {
      destroy_partial(lt);
    }
  }
  return plans_.emplace(key, p).first->second;
}

// lt-epilogue's plan ignores the bias (our epilogue adds it), so with and without share one.
Fp8Gemm::Plan& Fp8Gemm::plan_for(Fp8Path path, int64_t n, int64_t m, int64_t k, bool bias,
                                 bool f32_out) {
  return plan_for(Key{n, m, k, path == Fp8Path::LtOuter && bias, f32_out, path});
}

Fp8Path Fp8Gemm::chosen(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out) {
  check_args(x, w, bias, out);
  const int64_t N = x.dim(0), K = x.dim(1);
  if (N <= gemv_max_rows_ || !lt_shape_ok(x, w, out)) return Fp8Path::Gemv;
  const int64_t n = std::min(N, chunk_rows(K));
  for (Fp8Path p : {Fp8Path::LtOuter, Fp8Path::LtEpilogue})
    if (plan_for(p, n, w.dim(0), K, bias.defined(), out.dtype() == DType::F32).ok) return p;
  return Fp8Path::Gemv;
}

bool Fp8Gemm::can_run(Fp8Path path, const Tensor& x, const Tensor& w, const Tensor& bias,
                      const Tensor& out) {
  check_args(x, w, bias, out);
  if (path == Fp8Path::Auto || path == Fp8Path::Gemv) return true;
  if (!lt_shape_ok(x, w, out)) return false;
  const int64_t N = x.dim(0), K = x.dim(1), R = chunk_rows(K);
  const bool f32 = out.dtype() == DType::F32;
  // Every chunk but the last has R rows.
  return (N <= R || plan_for(path, R, w.dim(0), K, bias.defined(), f32).ok) &&
         plan_for(path, N - (N - 1) / R * R, w.dim(0), K, bias.defined(), f32).ok;
}

void Fp8Gemm::linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor out, Fp8Path path,
                     bool product_only, const AddNorm* norm) {
  check_args(x, w, bias, out);
  NC_CHECK(norm == nullptr || (norm_fusable(x, *norm) && !product_only),
           "fp8 linear: the norm cannot ride the quantiser for input {} (norm_fusable; never "
           "with product_only, which skips the quantiser)",
           shape_str(x.shape()));
  const int64_t N = x.dim(0), K = x.dim(1), M = w.dim(0);
  if (N == 0 || M == 0) return;
  ensure_scratch();
  const bool forced = path != Fp8Path::Auto;
  if (!forced) path = chosen(x, w, bias, out);
  NC_CHECK(path == Fp8Path::Gemv || lt_shape_ok(x, w, out),
           "fp8 linear: cuBLASLt's FP8 GEMM ({}) cannot run [{}, {}] x {}^T (K and M must be "
           "multiples of 16, the pointers 16-byte aligned)",
           fp8_path_name(path), N, K, shape_str(w.shape()));
  const bool f32_out = out.dtype() == DType::F32;
  const int64_t R = chunk_rows(K), out_elem = f32_out ? 4 : 2;
  const float* w_scale = fp8_row_scales(w);  // device pointers into the packed weight
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    const Chunk c{static_cast<const uint8_t*>(x.data()) + r0 * K * 2,
                  static_cast<const uint8_t*>(w.data()),
                  w_scale,
                  w_scale + M,
                  bias.defined() ? bias.data() : nullptr,
                  static_cast<uint8_t*>(out.data()) + r0 * M * out_elem,
                  std::min(R, N - r0),
                  M,
                  K,
                  f32_out};
    Chunk cn = c;
    if (norm) cn.residual = static_cast<uint8_t*>(norm->residual.data()) + r0 * K * 2;
    cn.norm = norm;
    run_chunk(cn, path, forced, product_only);
  }
}

// Quantises the chunk's rows into the scratch, then multiplies them by the weight.
void Fp8Gemm::run_chunk(const Chunk& c, Fp8Path path, bool forced, bool product_only) {
  uint8_t* codes = static_cast<uint8_t*>(scratch_.data());
  float* scales = reinterpret_cast<float*>(codes + kScratchCodeBytes);
  const cudaStream_t s = ctx_->stream;
  if (!product_only) quantize_chunk(c, codes, scales);
  if (path == Fp8Path::LtOuter || path == Fp8Path::LtEpilogue) {
    const Plan& p = plan_for(path, c.n, c.m, c.k, c.bias != nullptr, c.f32_out);
    // The rule chose this path from the first chunk's shape; a last, shorter chunk it has no
    // algorithm for takes the GEMV.
    NC_CHECK(p.ok || !forced,
             "fp8 linear: cuBLASLt has no FP8 algorithm for {} ({}) for [{}, {}] x [{}, {}]^T on "
             "this GPU",
             fp8_path_name(path),
             path == Fp8Path::LtOuter ? "outer-vector scales" : "unit scalar scales", c.n, c.k, c.m,
             c.k);
    if (p.ok) return run_lt(c, p, path, /*scale=*/!product_only);
  }
  k_call([&] {
    cuda::fp8_gemv(codes, scales, c.w, c.w_scale, c.bias, c.out, c.f32_out, c.n, c.m, c.k, s);
  });
}

// x's rows into codes and scales, with the norm first where the chunk carries one.
void Fp8Gemm::quantize_chunk(const Chunk& c, uint8_t* codes, float* scales) {
  const cudaStream_t s = ctx_->stream;
  if (c.norm == nullptr)
    return k_call([&] { cuda::fp8_quantize_rows(c.x, c.n, c.k, c.input_scale, codes, scales, s); });
  k_call([&] {
    cuda::fp8_add_rmsnorm_quantize(const_cast<void*>(c.x), c.residual, c.norm->weight.data(),
                                   c.norm->eps, c.n, c.k, c.input_scale, codes, scales, s);
  });
}

bool Fp8Gemm::norm_fusable(const Tensor& x, const AddNorm& norm) const {
  if (!fuse_norm_ || !norm.residual.defined() || !norm.weight.defined()) return false;
  if (x.dtype() != DType::BF16 || norm.residual.dtype() != DType::BF16 ||
      norm.weight.dtype() != DType::BF16 || x.ndim() != 2 || !x.is_contiguous() ||
      !norm.residual.is_contiguous() || norm.residual.shape() != x.shape())
    return false;
  const int64_t K = x.dim(1);
  return norm.weight.numel() == K && K % 8 == 0 && K <= cuda::fp8_add_rmsnorm_quantize_max_k() &&
         aligned16(x.data()) && aligned16(norm.residual.data()) && aligned16(norm.weight.data()) &&
         x.device() == Device::CUDA && norm.residual.device() == Device::CUDA &&
         norm.weight.device() == Device::CUDA;
}

// The cuBLASLt GEMM of one chunk over the scratch's codes, then (lt-outer) the bias where not
// fused or (lt-epilogue, where `scale`) the scale epilogue with the bias.
void Fp8Gemm::run_lt(const Chunk& c, const Plan& p, Fp8Path path, bool scale) {
  uint8_t* codes = static_cast<uint8_t*>(scratch_.data());
  const float* scales =
      c.act_scales ? c.act_scales : reinterpret_cast<const float*>(codes + kScratchCodeBytes);
  const cudaStream_t s = ctx_->stream;
  const LtLayouts& lt = p.lt;
  if (path == Fp8Path::LtOuter) {
    set_lt_desc(lt.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, c.w_scale, "fp8 a scale");
    set_lt_desc(lt.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, scales, "fp8 b scale");
    if (p.bias_fused) set_lt_desc(lt.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, c.bias, "fp8 bias");
  }
  const float alpha = 1.0f, beta = 0.0f;
  cublas_check(
      cublasLtMatmul(ctx_->lt, lt.desc, &alpha, c.w, lt.a, codes, lt.b, &beta, c.out, lt.c, c.out,
                     lt.c, &p.algo, ctx_->lt_workspace, ctx_->lt_workspace_bytes, s),
      "fp8 cublasLtMatmul");
  if (path == Fp8Path::LtOuter) {
    if (c.bias && !p.bias_fused)
      k_call([&] { cuda::fp8_add_bias(c.out, c.bias, c.f32_out, c.n, c.m, s); });
  } else if (scale) {
    k_call(
        [&] { cuda::fp8_scale_output(c.out, c.f32_out, scales, c.w_scale, c.bias, c.n, c.m, s); });
  }
}

void Fp8Gemm::epilogue_only(const Tensor& w, const Tensor& bias, Tensor out) {
  expect_cuda(w, "fp8 epilogue weight");
  expect_cuda(out, "fp8 epilogue output");
  w.expect_dtype(DType::F8E4M3, "fp8 epilogue weight");
  const int64_t N = out.dim(0), M = w.dim(0);
  out.expect_shape({N, M}, "fp8 epilogue output");
  out.expect_contiguous("fp8 epilogue output");
  NC_CHECK(out.dtype() == DType::BF16 || out.dtype() == DType::F32,
           "fp8 epilogue: output dtype {} not supported (bf16, f32)", dtype_name(out.dtype()));
  if (bias.defined()) {
    bias.expect_shape({M}, "fp8 epilogue bias");
    expect_cuda(bias, "fp8 epilogue bias");
    bias.expect_dtype(out.dtype(), "fp8 epilogue bias");
  }
  NC_CHECK(N >= 1 && N <= kMaxChunkRows, "fp8 epilogue: {} rows (1..{})", N, kMaxChunkRows);
  ensure_scratch();
  const float* scales =
      reinterpret_cast<const float*>(static_cast<uint8_t*>(scratch_.data()) + kScratchCodeBytes);
  k_call([&] {
    cuda::fp8_scale_output(out.data(), out.dtype() == DType::F32, scales, fp8_row_scales(w),
                           bias.defined() ? bias.data() : nullptr, N, M, ctx_->stream);
  });
}

void Fp8Gemm::quantize_for_test(const Tensor& x, const Tensor& w, std::vector<uint8_t>* codes,
                                std::vector<float>* scales) {
  expect_bf16(x, "fp8 quantize input");
  x.expect_contiguous("fp8 quantize input");
  expect_cuda(w, "fp8 quantize weight");
  const int64_t N = x.dim(0), K = x.dim(1);
  NC_CHECK(w.dim(1) == K && N >= 1 && N <= chunk_rows(K),
           "fp8 quantize: input {} for weight {} (rows 1..{})", shape_str(x.shape()),
           shape_str(w.shape()), chunk_rows(K));
  ensure_scratch();
  uint8_t* dev_codes = static_cast<uint8_t*>(scratch_.data());
  float* dev_scales = reinterpret_cast<float*>(dev_codes + kScratchCodeBytes);
  const float* input_scale = fp8_row_scales(w) + w.dim(0);
  k_call([&] {
    cuda::fp8_quantize_rows(x.data(), N, K, input_scale, dev_codes, dev_scales, ctx_->stream);
  });
  codes->resize(size_t(N * K));
  scales->resize(size_t(N));
  cuda_check(cudaMemcpyAsync(codes->data(), dev_codes, codes->size(), cudaMemcpyDeviceToHost,
                             ctx_->stream),
             "fp8 quantize codes");
  cuda_check(cudaMemcpyAsync(scales->data(), dev_scales, scales->size() * sizeof(float),
                             cudaMemcpyDeviceToHost, ctx_->stream),
             "fp8 quantize scales");
  ctx_->synchronize();
}

}  // namespace nc::cuda_host

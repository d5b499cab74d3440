// The CUDA backend's GEMM with per-shape tuning (cuda_gemm.h).
#include "backend/cuda/cuda_gemm.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <optional>

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

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  NC_CHECK(end != v && *end == '\0' && n >= 0 && n <= (1L << 20), "{}={} is not a count", name, v);
  return int(n);
}

void check_linear_args(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out) {
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
  for (const Tensor* t : {&x, &w, &out}) t->expect_contiguous("linear");
  if (bias.defined()) {
    bias.expect_shape({M}, "linear bias");
    expect_cuda(bias, "linear bias");
    bias.expect_dtype(out.dtype(), "linear bias");
  }
}

GemmArgs args_of(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out) {
  GemmArgs a{x.data(),
             w.data(),
             bias.defined() ? bias.data() : nullptr,
             const_cast<void*>(out.data()),
             x.dim(0),
             w.dim(0),
             x.dim(1),
             out.dtype() == DType::F32,
             0};
  a.align = pointer_alignment({a.x, a.w, a.out, a.bias});
  return a;
}

bool capturing(const Context& ctx) {
  for (cudaStream_t s : {ctx.stream, ctx.side}) {
    if (s == nullptr) continue;
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    cuda_check(cudaStreamIsCapturing(s, &st), "cudaStreamIsCapturing");
    if (st != cudaStreamCaptureStatusNone) return true;
  }
  return false;
}

// A scratch buffer that tuning writes between timed launches so that they read the weights
// from memory, not from the L2 cache (as a decode step does); empty when the memory is short
// (then the timing is L2-warm for every candidate alike).
struct L2Flush {
  void* buf = nullptr;
  size_t bytes = 0;
  L2Flush(int device) {
    int l2 = 0;
    cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device);
    bytes = std::min<size_t>(size_t(l2) * 2, size_t(256) << 20);
    if (bytes == 0 || cudaMalloc(&buf, bytes) != cudaSuccess) {
      cudaGetLastError();  // clear the failed allocation's error
      buf = nullptr;
    }
  }
  ~L2Flush() {
    if (buf) cudaFree(buf);
  }
  L2Flush(const L2Flush&) = delete;
  L2Flush& operator=(const L2Flush&) = delete;
};

// Mean seconds of one launch over `reps` launches, each after an L2 flush, timed with events;
// a negative value when the candidate fails to launch.
double time_launches(const Context& ctx, const LtLayouts& lt, const GemmCandidate& c,
                     const GemmArgs& a, int reps, const L2Flush& flush) {
  if (launch_candidate(ctx, lt, c, a) != CUBLAS_STATUS_SUCCESS) return -1;
  cudaEvent_t e0, e1;
  cuda_check(cudaEventCreate(&e0), "cudaEventCreate");
  cuda_check(cudaEventCreate(&e1), "cudaEventCreate");
  double total = 0;
  for (int i = 0; i < reps; ++i) {
    if (flush.buf) cudaMemsetAsync(flush.buf, i & 0xff, flush.bytes, ctx.stream);
    cuda_check(cudaEventRecord(e0, ctx.stream), "cudaEventRecord");
    launch_candidate(ctx, lt, c, a);
    cuda_check(cudaEventRecord(e1, ctx.stream), "cudaEventRecord");
    cuda_check(cudaEventSynchronize(e1), "cudaEventSynchronize");
    float ms = 0;
    cuda_check(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
    total += ms * 1e-3;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return total / reps;
}

}  // namespace

GemmTuning GemmTuning::from_env() {
  GemmTuning t;
  t.enabled = env_int("NC_GEMM_TUNE", 0) != 0;
  t.max_rows = env_int("NC_GEMM_TUNE_MAX_ROWS", t.max_rows);
  t.top_n = std::max(1, env_int("NC_GEMM_TOP_N", t.top_n));
  return t;
}

CublasLtGemm::~CublasLtGemm() {
  for (auto& [key, g] : plans_) destroy_lt_layouts(g.lt);
}

void CublasLtGemm::linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor out) {
  check_linear_args(x, w, bias, out);
  if (x.dim(0) == 0 || w.dim(0) == 0) return;
  const GemmArgs a = args_of(x, w, bias, out);
  const Key key{a.n, a.m, a.k, a.bias != nullptr, a.f32_out, a.align};
  Plan& g = plan_for(x, w, bias, out);
  if (g.chosen < 0 && g.candidates.size() > 1 && !capturing(*ctx_)) tune(key, g, a);
  const GemmCandidate& c = g.candidates[size_t(std::max(g.chosen, 0))];
  cublas_check(launch_candidate(*ctx_, g.lt, c, a), "cublasLtMatmul");
}

CublasLtGemm::Plan& CublasLtGemm::plan_for(const Tensor& x, const Tensor& w, const Tensor& bias,
                                           const Tensor& out) {
  const GemmArgs a = args_of(x, w, bias, out);
  const Key key{a.n, a.m, a.k, a.bias != nullptr, a.f32_out, a.align};
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  Plan g;
  g.lt = make_lt_layouts(a);
  const bool extras = tuning_.enabled && a.n <= tuning_.max_rows;
  try {
    g.candidates = list_candidates(*ctx_, g.lt, a, tuning_.top_n, extras);
  } catch (...) {
    destroy_lt_layouts(g.lt);
    throw;
  }
  if (g.candidates.size() == 1) g.chosen = 0;
  if (g.chosen < 0) restore_choice(key, g, a);
  return plans_.emplace(key, std::move(g)).first->second;
}

// A shape whose row bucket was tuned already (in this process or, through the file, an earlier
// one) takes that choice without timing: the same candidate when it is in the list, else the
// choice rebuilt for this shape, else (cuBLASLt rejects it here) the heuristic's pick.
void CublasLtGemm::restore_choice(const Key& key, Plan& g, const GemmArgs& a) {
  const std::optional<std::string> config = cache().lookup(cache_key(key));
  if (!config) return;
  for (size_t i = 0; i < g.candidates.size(); ++i) {
    if (candidate_config(g.candidates[i]) == *config) {
      g.chosen = int(i);
      return;
    }
  }
  GemmCandidate c;
  if (candidate_from_config(*ctx_, g.lt, a, *config, &c)) {
    g.candidates.push_back(c);
    g.chosen = int(g.candidates.size() - 1);
  } else {
    g.chosen = 0;
  }
}

// Times every candidate on the call's own operands (the output is rewritten each time; the
// caller's launch then writes it once more), each launch after an L2 flush, and keeps the
// fastest; the heuristic's pick stays
// unless another is at least 2% faster (timing noise must not flip the choice).
void CublasLtGemm::tune(const Key& key, Plan& g, const GemmArgs& a) {
  const L2Flush flush(ctx_->device);
  const double one = time_launches(*ctx_, g.lt, g.candidates[0], a, 1, flush);
  const int reps = std::clamp(int(2e-4 / std::max(one, 1e-7)), 3, 10);
  double best = time_launches(*ctx_, g.lt, g.candidates[0], a, reps, flush);
  int pick = 0;
  for (size_t i = 1; i < g.candidates.size(); ++i) {
    const double s = time_launches(*ctx_, g.lt, g.candidates[i], a, reps, flush);
    if (s > 0 && (best <= 0 || s < best * 0.98)) best = s, pick = int(i);
  }
  g.chosen = pick;
  cache().store(cache_key(key), candidate_config(g.candidates[size_t(pick)]));
}

// The row bucket (the next power of two: one tuning per bucket, not per row count, since eager
// steps see many row counts), the rest of the shape, and what the candidate list depends on.
std::string CublasLtGemm::cache_key(const Key& key) const {
  int64_t bucket = 1;
  while (bucket < key.n) bucket *= 2;
  return "rows<=" + std::to_string(bucket) + " m=" + std::to_string(key.m) +
         " k=" + std::to_string(key.k) + " bias=" + std::to_string(int(key.bias)) +
         " f32=" + std::to_string(int(key.f32_out)) + " align=" + std::to_string(key.align) +
         " top=" + std::to_string(tuning_.top_n);
}

GemmTuneCache& CublasLtGemm::cache() {
  if (!cache_) cache_ = std::make_unique<GemmTuneCache>(ctx_->device);
  return *cache_;
}

std::vector<std::string> CublasLtGemm::candidate_names(const Tensor& x, const Tensor& w,
                                                       const Tensor& bias, const Tensor& out) {
  check_linear_args(x, w, bias, out);
  std::vector<std::string> names;
  for (const GemmCandidate& c : plan_for(x, w, bias, out).candidates) names.push_back(c.name);
  return names;
}

void CublasLtGemm::run_candidate(size_t i, const Tensor& x, const Tensor& w, const Tensor& bias,
                                 Tensor out) {
  check_linear_args(x, w, bias, out);
  Plan& g = plan_for(x, w, bias, out);
  NC_CHECK(i < g.candidates.size(), "linear: candidate {} of {}", i, g.candidates.size());
  cublas_check(launch_candidate(*ctx_, g.lt, g.candidates[i], args_of(x, w, bias, out)),
               g.candidates[i].name.c_str());
}

int CublasLtGemm::chosen(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out) {
  check_linear_args(x, w, bias, out);
  return plan_for(x, w, bias, out).chosen;
}

}  // namespace nc::cuda_host

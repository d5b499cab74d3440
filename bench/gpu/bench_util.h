// Timing and data helpers shared by the decode-choice and gemm-decode benchmarks of nc_gpu_bench:
// host wall-clock timing bracketed by cuda_synchronize, the device-to-device copy rate measured
// in the same process (the yardstick every fraction is against), random bf16 data without large
// host staging, and the optional CSV under $OUT.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"

namespace nc::bench {

// Seconds per call of f(): `warmup` calls, then the median of `reps` runs of `iters` calls.
template <typename F>
double seconds_per_call(Backend& b, int iters, int reps, F&& f, int warmup = 3) {
  for (int i = 0; i < warmup; ++i) f();
  cuda_synchronize(b);
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) f();
    cuda_synchronize(b);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                iters);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Seconds per call, with the number of calls per run chosen so that a run lasts ~`run_s`.
template <typename F>
double auto_seconds_per_call(Backend& b, F&& f, double run_s = 2e-3, int reps = 5) {
  f();
  cuda_synchronize(b);
  const auto t0 = std::chrono::steady_clock::now();
  f();
  cuda_synchronize(b);
  const double one = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int iters = std::clamp(int(run_s / std::max(one, 1e-7)), 3, 500);
  return seconds_per_call(b, iters, reps, f, 2);
}

// Device-to-device copy bandwidth (bytes read + written), TB/s, over 1 GiB each way.
inline double copy_tbs(Backend& be) {
  const int64_t n = int64_t(1) << 29;
  Tensor a = be.alloc({n}, DType::BF16), b = be.alloc({n}, DType::BF16);
  return 2.0 * double(n) * 2.0 / seconds_per_call(be, 20, 5, [&] { be.copy_rows(a, b); }) / 1e12;
}

// A bf16 GEMM of 8192^3 through Backend::linear (cuBLASLt): TFLOP/s.
inline double gemm_peak_tflops(Backend& be) {
  const int64_t n = 8192;
  Tensor x = be.alloc({n, n}, DType::BF16), w = be.alloc({n, n}, DType::BF16);
  be.fill_uniform(x, 1, -1.0f, 1.0f);
  be.fill_uniform(w, 2, -1.0f, 1.0f);
  Tensor out = be.alloc({n, n}, DType::BF16);
  const double s = seconds_per_call(be, 10, 5, [&] { be.linear(x, w, Tensor(), out); });
  return 2.0 * double(n) * n * n / s / 1e12;
}

inline HostTensor random_host(const Shape& shape, std::mt19937& rng, float scale = 1.0f) {
  HostTensor h;
  h.shape = shape;
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  h.data.resize(size_t(n));
  std::normal_distribution<float> normal(0.0f, scale);
  for (float& x : h.data) x = normal(rng);
  return h;
}

// Fills `rows` ([N, W] on `be`) with `chunk` rows of random values, repeated.
inline void fill_random_rows(Backend& be, Tensor rows, int64_t chunk, std::mt19937& rng,
                             float scale = 1.0f) {
  const int64_t N = rows.dim(0);
  Tensor src = be.upload(random_host({std::min(chunk, N), rows.dim(1)}, rng, scale));
  for (int64_t p = 0; p < N; p += src.dim(0)) {
    const int64_t n = std::min<int64_t>(src.dim(0), N - p);
    be.copy_rows(src.slice(0, n), rows.slice(p, p + n));
  }
}

// A decode step of `batch` requests of `ctx` tokens each, request r on pages
// perm[r * pages_per_request, (r + 1) * pages_per_request) (shuffled pages: a running pool's).
inline AttentionStep decode_step(int batch, int ctx, const std::vector<int32_t>& perm,
                                 int page_size) {
  const int pps = (ctx + page_size - 1) / page_size;
  AttentionStep step;
  step.num_tokens = batch;
  PagedKVBatch b;
  for (int r = 0; r < batch; ++r) {
    std::vector<int32_t> pages(perm.begin() + int64_t(r) * pps,
                               perm.begin() + int64_t(r + 1) * pps);
    b.add(1, pages, ctx, page_size);
  }
  step.levels = {b};
  return step;
}

// $OUT/<name> opened for writing with `header` as its first line, or null when OUT is unset.
inline std::FILE* open_csv(const char* name, const char* header) {
  const char* dir = std::getenv("OUT");
  if (dir == nullptr || *dir == '\0') return nullptr;
  std::FILE* f = std::fopen((std::string(dir) + "/" + name).c_str(), "w");
  if (f) std::fprintf(f, "%s\n", header);
  return f;
}

}  // namespace nc::bench

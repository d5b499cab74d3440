// GPU microbenchmarks of the CUDA backend:
//   decode  paged decode attention (one query row per request) over long contexts: achieved
//           bandwidth = bytes of K/V read / time
//   gemm    bf16 linear (cuBLASLt) throughput
// Times are host wall-clock over many back-to-back calls, bracketed by synchronize(), after a
// warm-up; each configuration is measured `reps` times and the median is reported.
//
// Usage: nc_gpu_bench [decode|gemm|all]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"

namespace nc {
namespace {

using Clock = std::chrono::steady_clock;

template <typename F>
double median_seconds(Backend& b, int iters, int reps, F&& f) {
  for (int i = 0; i < 3; ++i) f();  // warm-up: module load, plan caches, cuBLASLt heuristics
  b.synchronize();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) f();
    b.synchronize();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / iters);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

HostTensor random_host(const Shape& shape, std::mt19937& rng, float scale = 1.0f) {
  HostTensor h;
  h.shape = shape;
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  h.data.resize(size_t(n));
  std::normal_distribution<float> normal(0.0f, scale);
  for (float& x : h.data) x = normal(rng);
  return h;
}

void bench_decode(double peak_tbs) {
  const int Hq = 16, Hk = 8, D = 128, page_size = 16, batch = 128;
  std::printf(
      "\n## Paged decode attention: batch %d, %d q heads / %d kv heads, head_dim %d, page %d, NHD, "
      "bf16\n",
      batch, Hq, Hk, D, page_size);
  std::printf("| context | kernel | time (us) | K/V bytes (GB) | TB/s | fraction of %.2f TB/s |\n",
              peak_tbs);
  std::printf("|---|---|---|---|---|---|\n");
  std::mt19937 rng(7);
  for (int ctx : {2048, 4096}) {
    const int pages_per_seq = (ctx + page_size - 1) / page_size;
    const int num_pages = batch * pages_per_seq;
    AttentionShape shape{Hq, Hk, D, 1.0f / std::sqrt(float(D)),
                         KVCacheShape{1, num_pages, page_size, Hk, D, KVLayout::NHD}};
    // Pages of different requests interleaved, as a running server's pool would be.
    std::vector<int32_t> perm(num_pages);
    for (int i = 0; i < num_pages; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    AttentionStep step;
    step.num_tokens = batch;
    PagedKVBatch b;
    for (int r = 0; r < batch; ++r) {
      std::vector<int32_t> pages(perm.begin() + r * pages_per_seq,
                                 perm.begin() + (r + 1) * pages_per_seq);
      b.add(1, pages, ctx, page_size);
    }
    step.levels = {b};
    for (DecodeKernel kernel : {DecodeKernel::CudaCores, DecodeKernel::TensorCores}) {
      CudaBackendOptions opt;
      opt.decode_kernel = kernel;
      auto be = make_cuda_backend(0, opt);
      Tensor kv = be->alloc({num_pages, 2, page_size, Hk, D}, DType::BF16);
      {
        // Fill the pool with random bf16 values in slices (no 2 GB host staging).
        const int64_t chunk = 4096;
        HostTensor h = random_host({chunk, 2 * page_size * Hk * D}, rng);
        for (int64_t p = 0; p < num_pages; p += chunk) {
          const int64_t n = std::min<int64_t>(chunk, num_pages - p);
          Tensor src = be->upload(h);
          be->copy_rows(src.slice(0, n),
                        kv.view({num_pages, 2 * page_size * Hk * D}).slice(p, p + n));
        }
      }
      Tensor q = be->upload(random_host({batch, Hq * D}, rng));
      Tensor k = be->upload(random_host({batch, Hk * D}, rng));
      Tensor v = be->upload(random_host({batch, Hk * D}, rng));
      Tensor out = be->alloc({batch, Hq * D}, DType::BF16);
      auto plan = be->plan_attention(step, shape);
      const double s = median_seconds(*be, 50, 5, [&] { be->attention(*plan, q, k, v, kv, out); });
      const double bytes = double(batch) * ctx * 2.0 * Hk * D * 2.0;
      const double tbs = bytes / s / 1e12;
      std::printf(
          "| %d | %s | %.1f | %.3f | %.3f | %.3f |\n", ctx,
          kernel == DecodeKernel::CudaCores ? "cuda-core decode" : "tensor-core (prefill) decode",
          s * 1e6, bytes / 1e9, tbs, tbs / peak_tbs);
    }
  }
}

void bench_gemm(double peak_tflops) {
  std::printf("\n## bf16 GEMM (cuBLASLt, f32 accumulate): out[N, M] = x[N, K] @ w[M, K]^T\n");
  std::printf("| N | K | M | time (us) | TFLOP/s | fraction of %.0f |\n", peak_tflops);
  std::printf("|---|---|---|---|---|---|\n");
  std::mt19937 rng(11);
  auto be = make_cuda_backend(0);
  struct G {
    int64_t n, k, m;
  };
  for (G g : {G{8192, 8192, 8192}, G{4096, 4096, 4096}, G{4096, 4096, 14336}, G{4096, 14336, 4096},
              G{128, 4096, 4096}, G{128, 4096, 14336}, G{1, 4096, 4096}}) {
    Tensor x = be->upload(random_host({g.n, g.k}, rng));
    Tensor w = be->upload(random_host({g.m, g.k}, rng, 0.02f));
    Tensor out = be->alloc({g.n, g.m}, DType::BF16);
    const int iters = g.n * g.m * g.k > (int64_t(1) << 33) ? 20 : 200;
    const double s = median_seconds(*be, iters, 5, [&] { be->linear(x, w, Tensor(), out); });
    const double tflops = 2.0 * g.n * g.m * g.k / s / 1e12;
    std::printf("| %ld | %ld | %ld | %.1f | %.1f | %.3f |\n", long(g.n), long(g.k), long(g.m),
                s * 1e6, tflops, tflops / peak_tflops);
  }
}

}  // namespace
}  // namespace nc

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "all";
  try {
    auto be = nc::make_cuda_backend(0);
    std::printf("# nc_gpu_bench on %s\n", be->name().c_str());
    be.reset();
    if (what == "decode" || what == "all") nc::bench_decode(3.0);
    if (what == "gemm" || what == "all") nc::bench_gemm(790.0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nc_gpu_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}

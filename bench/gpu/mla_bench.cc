// nc_gpu_bench mla: DeepSeek's MLA decode attention (latent 512 + rope 64, page 16, bf16) on the
// CUDA backend's three kernels (mla_fi_host.h; NC_MLA_KERNEL picks one per plan): our CUDA-core
// fallback ("old", mla.cu), FlashInfer's FA2 MLA kernel and its Hopper kernel (where the device is
// compute capability 9.0).
//
//   decode   V2-Lite's 16 heads and V3's 128 at batch 1/16/64/128 x context 1k/4k/8k/32k: time
//            per Backend::mla_attention (append + attention) against the floor, the larger of
//            the cache bytes read (batch x context x 576 x 2: latent + rope) over the copy rate
//            and the FLOPs (batch x context x heads x 2 x (576 + 512): scores over latent + rope,
//            output over the latent) over the bf16 GEMM rate, both measured in the same run (at
//            128 heads decode is compute-bound: 241 FLOP a cache byte against the H200's ~190);
//            FlashInfer's plan time (host MLAPlan + its copy) beside it. The old kernel runs
//            at 16 heads and batch <= 64 only (it is 100-1000x off the floor; 128 heads at 32k
//            would take seconds a call).
//   cascade  64 requests sharing an 8k prefix + 128 own tokens each: one level per request
//            holding the whole context (the prefix read 64 times) against a shared non-causal
//            level plus the own level (read once, merged by LSE); floor: (prefix + 64 x 128)
//            tokens' bytes over the copy rate.
// With OUT set, the decode rows also go to $OUT/mla.csv (times in us, -1: not run or failed).
// Times: host wall-clock over back-to-back calls after a warm-up, median of 5 runs
// (bench_util.h). A failed kernel prints the error and the row goes on with "error".
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "bench_util.h"

namespace nc {
namespace {

constexpr int kDl = 512, kDr = 64, kD = kDl + kDr, kPs = 16;

AttentionShape mla_shape(int heads, int num_pages) {
  AttentionShape s{heads, 1, kD, 1.0f / std::sqrt(192.0f), KVCacheShape{1, num_pages, kPs, 1, kD}};
  s.kv.latent = true;
  s.latent_dim = kDl;
  return s;
}

bool device_sm90() {
  int dev = 0, major = 0, minor = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  return major == 9 && minor == 0;
}

struct Timing {
  double run_s = -1;   // per mla_attention call; < 0: failed
  double plan_s = -1;  // per plan_attention call
};

// One kernel (NC_MLA_KERNEL=kernel) on `step`: plan time and run time.
Timing time_kernel(Backend& be, const std::string& kernel, const AttentionStep& step,
                   const AttentionShape& shape, Tensor pages) {
  setenv("NC_MLA_KERNEL", kernel.c_str(), 1);
  Timing t;
  try {
    const int B = step.num_tokens, H = shape.num_qo_heads;
    Tensor q = be.alloc({B, H * kD}, DType::BF16), lat = be.alloc({B, kD}, DType::BF16);
    be.fill_uniform(q, 11, -0.5f, 0.5f);
    be.fill_uniform(lat, 12, -1.0f, 1.0f);
    Tensor out = be.alloc({B, H * kDl}, DType::BF16);
    t.plan_s = bench::auto_seconds_per_call(
        be, [&] { (void)be.plan_attention(step, shape); }, 10e-3);
    auto plan = be.plan_attention(step, shape);
    t.run_s = bench::auto_seconds_per_call(
        be, [&] { be.mla_attention(*plan, q, lat, pages, out); }, 20e-3);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mla bench: kernel %s, %d rows, %zu levels: %s\n", kernel.c_str(),
                 step.num_tokens, step.levels.size(), e.what());
    t = Timing{};
  }
  unsetenv("NC_MLA_KERNEL");
  return t;
}

// Microseconds, or -1 for a time not measured (< 0).
double us(double s) {
  return s < 0 ? -1.0 : s * 1e6;
}

// "time (fraction of floor)" or "error" / "-".
std::string cell(double t, double floor, bool ran = true) {
  if (!ran) return "-";
  if (t < 0) return "error";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f (%.3f)", t * 1e6, floor / t);
  return buf;
}

// Requests of `own` tokens each (pages shuffled) after a shared prefix of `prefix` tokens
// (pages [0, prefix / kPs)): one level each holding the whole context, or a shared non-causal
// level plus the own level.
AttentionStep decode_step(int B, int prefix, int own, int num_pages, bool cascade,
                          std::mt19937& rng) {
  const int pp = prefix / kPs, op = (own + kPs - 1) / kPs;
  std::vector<int32_t> rest(static_cast<size_t>(num_pages - pp));
  std::iota(rest.begin(), rest.end(), pp);
  std::shuffle(rest.begin(), rest.end(), rng);
  std::vector<int32_t> shared(static_cast<size_t>(pp));
  std::iota(shared.begin(), shared.end(), 0);
  AttentionStep step{B, {}};
  PagedKVBatch lvl0, lvl1;
  lvl0.causal = false;
  if (cascade) lvl0.add(B, shared, prefix, kPs);
  for (int b = 0; b < B; ++b) {
    std::vector<int32_t> mine(rest.begin() + int64_t(b) * op, rest.begin() + int64_t(b + 1) * op);
    if (cascade) {
      lvl1.add(1, mine, own, kPs);
    } else {
      std::vector<int32_t> all = shared;
      all.insert(all.end(), mine.begin(), mine.end());
      lvl1.add(1, all, prefix + own, kPs);
    }
  }
  step.levels = cascade ? std::vector<PagedKVBatch>{lvl0, lvl1} : std::vector<PagedKVBatch>{lvl1};
  return step;
}

void bench_decode(Backend& be, double copy, Tensor pages, int num_pages, std::mt19937& rng) {
  const bool sm90 = device_sm90();
  const double peak = bench::gemm_peak_tflops(be);
  std::FILE* csv = bench::open_csv("mla.csv",
                                   "heads,batch,context,floor_us,old_us,fa2_us,sm90_us,fa2_plan_us,"
                                   "copy_tbs,bytes_floor_us,flop_floor_us,gemm_tflops");
  std::printf(
      "\n## MLA decode (latent %d + rope %d, page %d, bf16): time in us (fraction of the floor, "
      "the larger of bytes / copy rate and FLOPs / GEMM rate); copy %.3f TB/s, bf16 GEMM "
      "(cuBLASLt 8192^3) %.0f TFLOP/s\n| heads | batch | context | bytes floor (us) | FLOP floor "
      "(us) | old | FlashInfer FA2 | FlashInfer Hopper | FA2 plan (us) "
      "|\n|---|---|---|---|---|---|---|---|---|\n",
      kDl, kDr, kPs, copy, peak);
  for (int H : {16, 128}) {
    const AttentionShape shape = mla_shape(H, num_pages);
    for (int B : {1, 16, 64, 128})
      for (int ctx : {1024, 4096, 8192, 32768}) {
        const AttentionStep step = decode_step(B, 0, ctx, num_pages, false, rng);
        const double bytes_floor = double(B) * ctx * kD * 2.0 / (copy * 1e12);
        const double flop_floor = double(B) * ctx * H * 2.0 * (kD + kDl) / (peak * 1e12);
        const double floor = std::max(bytes_floor, flop_floor);
        const bool old = H == 16 && B <= 64;
        const Timing t_old = old ? time_kernel(be, "fallback", step, shape, pages) : Timing{};
        const Timing t_fa2 = time_kernel(be, "fa2", step, shape, pages);
        const Timing t_h = sm90 ? time_kernel(be, "sm90", step, shape, pages) : Timing{};
        std::printf("| %d | %d | %d | %.1f | %.1f | %s | %s | %s | %.1f |\n", H, B, ctx,
                    bytes_floor * 1e6, flop_floor * 1e6, cell(t_old.run_s, floor, old).c_str(),
                    cell(t_fa2.run_s, floor).c_str(), cell(t_h.run_s, floor, sm90).c_str(),
                    us(t_fa2.plan_s));
        std::fflush(stdout);
        if (csv)  // -1: not run or failed
          std::fprintf(csv, "%d,%d,%d,%.2f,%.2f,%.2f,%.2f,%.2f,%.4f,%.2f,%.2f,%.1f\n", H, B, ctx,
                       floor * 1e6, us(t_old.run_s), us(t_fa2.run_s), us(t_h.run_s),
                       us(t_fa2.plan_s), copy, bytes_floor * 1e6, flop_floor * 1e6, peak);
      }
  }
  if (csv) std::fclose(csv);
}

void bench_cascade(Backend& be, double copy, Tensor pages, int num_pages, std::mt19937& rng) {
  const bool sm90 = device_sm90();
  const int B = 64, prefix = 8192, own = 128;
  const double floor = (double(prefix) + double(B) * own) * kD * 2.0 / (copy * 1e12);
  std::printf(
      "\n## MLA shared prefix: %d requests x (%d shared + %d own tokens); floor (prefix once + "
      "own) %.1f us\n| heads | kernel | plain (us, of floor) | cascade (us, of floor) | speedup "
      "|\n|---|---|---|---|---|\n",
      B, prefix, own, floor * 1e6);
  const AttentionStep plain = decode_step(B, prefix, own, num_pages, false, rng);
  const AttentionStep casc = decode_step(B, prefix, own, num_pages, true, rng);
  for (int H : {16, 128}) {
    const AttentionShape shape = mla_shape(H, num_pages);
    for (const char* k : {"fallback", "fa2", "sm90"}) {
      if ((std::string(k) == "sm90" && !sm90) || (std::string(k) == "fallback" && H != 16))
        continue;
      const Timing tp = time_kernel(be, k, plain, shape, pages);
      const Timing tc = time_kernel(be, k, casc, shape, pages);
      const double speedup = tp.run_s > 0 && tc.run_s > 0 ? tp.run_s / tc.run_s : 0.0;
      std::printf("| %d | %s | %s | %s | %.2fx |\n", H, k, cell(tp.run_s, floor).c_str(),
                  cell(tc.run_s, floor).c_str(), speedup);
      std::fflush(stdout);
    }
  }
}

}  // namespace

void bench_mla() {
  auto be = make_cuda_backend(0);
  std::mt19937 rng(15);
  const double copy = bench::copy_tbs(*be);
  // Batch 128 x 32k tokens (4.8 GB of pages) plus room for the shuffles.
  const int num_pages = 128 * 32768 / kPs + 64;
  Tensor pages = be->alloc({num_pages, kPs, 1, kD}, DType::BF16);
  be->fill_uniform(pages, 13, -1.0f, 1.0f);
  bench_decode(*be, copy, pages, num_pages, rng);
  bench_cascade(*be, copy, pages, num_pages, rng);
}

}  // namespace nc

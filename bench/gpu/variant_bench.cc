// nc_gpu_bench variants: the attention variants' and the JIT's numbers (docs/gpu.md, issue #12).
//   - the JIT compile time of one configuration (decode_hd128_w0_sc1_bf16) into a fresh cache
//     folder, then its load from that folder by a fresh registry (a hit);
//   - paged decode of a head_dim-256 model (16 q / 8 kv heads) at batch 128, context 4096, as a
//     fraction of the device-to-device copy bandwidth measured in the same run;
//   - a sliding-window decode (window 4096) at context 32k, batch 32: the own entry cut to the
//     window's pages (as kv/sliding_window.h's window_view cuts it), timed against the bytes of
//     those pages, and the same step over the whole 32k for comparison;
//   - paged decode at head_dim 96 (Phi-3 mini's heads) on our own kernel (attn_generic.h).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/attn_registry.h"
#include "backend/cuda/cuda_backend.h"

namespace nc {
namespace {

using Clock = std::chrono::steady_clock;

// Seconds per call of f(): 3 warm-up calls, then the median of 5 runs of `iters` calls.
template <typename F>
double seconds_per_call(Backend& b, int iters, F&& f) {
  for (int i = 0; i < 3; ++i) f();
  cuda_synchronize(b);
  std::vector<double> t;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) f();
    cuda_synchronize(b);
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / iters);
  }
  std::sort(t.begin(), t.end());
  return t[2];
}

// Device-to-device copy of 1 GiB: bytes read + written per second, TB/s.
double copy_bandwidth_tbs(Backend& be) {
  const int64_t n = int64_t(1) << 29;
  Tensor a = be.alloc({n}, DType::BF16), b = be.alloc({n}, DType::BF16);
  return 2.0 * double(n) * 2.0 / seconds_per_call(be, 20, [&] { be.copy_rows(a, b); }) / 1e12;
}

void bench_jit_compile() {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("nc_jit_bench." + std::to_string(::getpid())))
          .string();
  std::filesystem::remove_all(dir);
  cuda_host::JitOptions opt;
  opt.cache_dir = dir;
  opt.use_aot = false;
  const cuda::AttnKernelKey key{cuda::AttnKind::Decode, 128, false, true};
  cuda_host::AttnRegistry fresh(opt);
  const auto t0 = Clock::now();
  fresh.get(key);
  const double compile_s = std::chrono::duration<double>(Clock::now() - t0).count();
  cuda_host::AttnRegistry again(opt);
  const auto t1 = Clock::now();
  again.get(key);
  const double load_s = std::chrono::duration<double>(Clock::now() - t1).count();
  std::printf("\n## Attention JIT: %s into an empty cache folder\n",
              cuda::attn_key_string(key).c_str());
  std::printf("| compile + load (s) | nvcc (s) | compiles | load from the cache (ms) | hits |\n");
  std::printf("|---|---|---|---|---|\n| %.1f | %.1f | %lld | %.1f | %lld |\n", compile_s,
              fresh.stats().compile_seconds, (long long)fresh.stats().compiles, load_s * 1e3,
              (long long)again.stats().hits);
  std::filesystem::remove_all(dir);
}

struct DecodeRun {
  double seconds = 0;
  double kv_bytes = 0;  // K and V bytes of the pages the step names
};

// One decode step per request over `pages_per_req` pages each of `tokens` tokens (the entry's
// last page full), heads Hq/Hk of D, the given window and soft cap.
DecodeRun decode_run(int batch, int pages_per_req, int tokens, int Hq, int Hk, int D,
                     int window_left, float soft_cap, std::mt19937& rng) {
  const int ps = 16, num_pages = batch * pages_per_req;
  AttentionShape shape{Hq, Hk, D, 1.0f / std::sqrt(float(D)),
                       KVCacheShape{1, num_pages, ps, Hk, D, KVLayout::NHD}};
  shape.window_left = window_left;
  shape.logits_soft_cap = soft_cap;
  std::vector<int32_t> perm(num_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  AttentionStep step;
  step.num_tokens = batch;
  PagedKVBatch level;
  for (int r = 0; r < batch; ++r)
    level.add(1, {perm.begin() + r * pages_per_req, perm.begin() + (r + 1) * pages_per_req}, tokens,
              ps);
  step.levels = {level};
  auto be = make_cuda_backend(0, {});
  Tensor kv = be->alloc({num_pages, 2, ps, Hk, D}, DType::BF16);
  be->fill_uniform(kv, 1, -1.0f, 1.0f);
  Tensor q = be->alloc({batch, Hq * D}, DType::BF16), k = be->alloc({batch, Hk * D}, DType::BF16),
         v = be->alloc({batch, Hk * D}, DType::BF16), o = be->alloc({batch, Hq * D}, DType::BF16);
  for (Tensor* t : {&q, &k, &v}) be->fill_uniform(*t, 2, -1.0f, 1.0f);
  auto plan = be->plan_attention(step, shape);
  DecodeRun r;
  r.kv_bytes = double(batch) * tokens * 2.0 * Hk * D * 2.0;
  const int iters = std::clamp(int(2e10 / r.kv_bytes), 5, 200);
  r.seconds = seconds_per_call(*be, iters, [&] { be->attention(*plan, q, k, v, kv, o); });
  return r;
}

void bench_decode_variants() {
  std::mt19937 rng(12);
  double copy = 0;
  {
    auto be = make_cuda_backend(0, {});
    copy = copy_bandwidth_tbs(*be);
  }
  std::printf("\n## Variant decodes against the copy bandwidth of this run (%.3f TB/s)\n", copy);
  std::printf("| case | time (us) | K/V bytes read (GB) | TB/s | fraction of copy |\n");
  std::printf("|---|---|---|---|---|\n");
  auto row = [&](const char* name, const DecodeRun& r) {
    const double tbs = r.kv_bytes / r.seconds / 1e12;
    std::printf("| %s | %.1f | %.3f | %.3f | %.3f |\n", name, r.seconds * 1e6, r.kv_bytes / 1e9,
                tbs, tbs / copy);
  };
  row("head_dim 256, 16/8 heads, batch 128, context 4096",
      decode_run(128, 4096 / 16, 4096, 16, 8, 256, -1, 0.0f, rng));
  // Window 4096 (window_left 4095) at context 32k: the cut entry holds the window's pages only
  // (the row at 32767 sees 28672..32767: exactly 256 whole pages).
  const DecodeRun cut = decode_run(32, 4096 / 16, 4096, 16, 8, 128, 4095, 0.0f, rng);
  row("window 4096 at 32k, batch 32, head_dim 128: entry cut to the window", cut);
  row("the same over the whole 32k entry (mask only)",
      decode_run(32, 32768 / 16, 32768, 16, 8, 128, 4095, 0.0f, rng));
  // Phi-3 mini's attention shape (32 q / 32 kv heads of 96) on our own kernel (attn_generic.h).
  row("head_dim 96 (Phi-3 mini, 32/32 heads), batch 64, context 4096: our kernel",
      decode_run(64, 4096 / 16, 4096, 32, 32, 96, -1, 0.0f, rng));
}

}  // namespace

void bench_variants() {
  bench_jit_compile();
  bench_decode_variants();
}

}  // namespace nc

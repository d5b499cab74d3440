// nc_gpu_bench fp8kv: paged decode attention over a bf16 and an FP8 (e4m3) KV cache, one layer of
// 8 kv heads with GQA group 2 (16 q heads), 4 (32) and 8 (64), head_dim 128, page 16, NHD, pages
// shuffled over the pool; batch 64/128/256 x context 2048/8192. Per case and cache dtype, each
// decode path (the decode table, and FlashInfer's prefill kernel as decode on tensor cores)
// with the step's k/v append included (the fp8 one quantises), as the decoder runs it; fp8
// scales 1. Columns: microseconds per step, and the K/V bytes read (fp8: one byte a value) per
// second as a fraction of the device-to-device copy rate measured in the same run (bytes read +
// written, as the other subs count it). Also written to $OUT/fp8kv.csv when OUT is set.
// Over fp8 pages the "cuda-core" columns are the decode table, which runs our tensor-core FP8
// kernel (attn_decode_fp8.cuh); NC_FP8_DECODE_IMPL=fi makes it FlashInfer's CUDA-core kernel again,
// whose tokens per lane row and stage NC_FP8_DECODE_TILE (1, 2, 4; attn_decode.cuh) sets.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/fp8.h"

namespace nc {
namespace {

constexpr int kHk = 8, kD = 128, kPs = 16;
constexpr int kMaxBatch = 256, kMaxCtx = 8192;
constexpr int64_t kPoolPages = int64_t(kMaxBatch) * kMaxCtx / kPs;
constexpr int64_t kPageValues = 2 * int64_t(kPs) * kHk * kD;

// The pool of one dtype, filled once: bf16 normal values, or the e4m3 codes of normal values.
Tensor make_pool(Backend& be, bool fp8, std::mt19937& rng) {
  if (!fp8) {
    Tensor pool = be.alloc({kPoolPages, 2, kPs, kHk, kD}, DType::BF16);
    bench::fill_random_rows(be, pool.view({kPoolPages, kPageValues}), 256, rng);
    return pool;
  }
  Tensor pool = be.alloc({kPoolPages, 2, kPs, kHk, kD}, DType::F8E4M3);
  const int64_t chunk = int64_t(1) << 26;  // bytes copied at a time (64 MiB of codes)
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(size_t(chunk / 64));
  for (float& v : x) v = normal(rng);
  std::vector<uint8_t> codes(static_cast<size_t>(chunk));
  for (int64_t i = 0; i < chunk; i += int64_t(x.size()))  // a 1 MiB pattern, shifted each time
    quantize_e4m3(x.data(), int64_t(x.size()), 1.0f + float(i % 7) / 8, codes.data() + i);
  auto* dst = static_cast<uint8_t*>(pool.data());
  const int64_t total = kPoolPages * kPageValues;
  for (int64_t off = 0; off < total; off += chunk) {
    const size_t n = size_t(std::min(chunk, total - off));
    if (cudaMemcpy(dst + off, codes.data(), n, cudaMemcpyHostToDevice) != cudaSuccess)
      throw std::runtime_error("fp8kv bench: filling the fp8 pool failed");
  }
  return pool;
}

// NC_FP8KV_LAYOUT=HND: pages head-major (one KV head's tokens contiguous); NHD otherwise.
KVLayout bench_layout() {
  const char* e = std::getenv("NC_FP8KV_LAYOUT");
  return e != nullptr && std::string(e) == "HND" ? KVLayout::HND : KVLayout::NHD;
}

struct CaseResult {
  double seconds[2];  // CUDA-core decode, tensor-core decode
};

// One decode step of `batch` requests of `ctx` tokens over `pool` on each backend (be[0]: the
// CUDA-core decode, be[1]: the tensor-core one).
CaseResult run_case(Backend* const be_of[2], Tensor pool, bool fp8, int group, int batch, int ctx,
                    std::mt19937& rng) {
  const int Hq = kHk * group;
  AttentionShape shape{Hq, kHk, kD, 1.0f / std::sqrt(float(kD)),
                       KVCacheShape{1, int(kPoolPages), kPs, kHk, kD, bench_layout()}};
  shape.kv.fp8 = fp8;
  std::vector<int32_t> perm(static_cast<size_t>(kPoolPages));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  const AttentionStep step = bench::decode_step(batch, ctx, perm, kPs);
  CaseResult r{};
  for (int kernel = 0; kernel < 2; ++kernel) {
    Backend& be = *be_of[kernel];
    Tensor q = be.upload(bench::random_host({batch, Hq * kD}, rng));
    Tensor k = be.upload(bench::random_host({batch, kHk * kD}, rng));
    Tensor v = be.upload(bench::random_host({batch, kHk * kD}, rng));
    Tensor out = be.alloc({batch, Hq * kD}, DType::BF16);
    auto plan = be.plan_attention(step, shape);
    r.seconds[kernel] = bench::auto_seconds_per_call(
        be, [&] { be.attention(*plan, q, k, v, pool, out); }, 20e-3);
  }
  return r;
}

}  // namespace

void bench_fp8kv() {
  CudaBackendOptions cc, tc;
  cc.decode_kernel = DecodeKernel::CudaCores;
  tc.decode_kernel = DecodeKernel::TensorCores;
  // Declared before the pools: the pools (allocated through the first) are freed before them.
  std::unique_ptr<Backend> backends[2] = {make_cuda_backend(0, cc), make_cuda_backend(0, tc)};
  Backend* const be_of[2] = {backends[0].get(), backends[1].get()};
  const double copy = bench::copy_tbs(*backends[0]);
  std::printf(
      "\n## Paged decode attention, bf16 vs fp8 (e4m3) KV cache: 8 kv heads, head_dim 128, page "
      "16, %s; copy %.3f TB/s (bytes read + written); fraction = K/V bytes read per second / "
      "copy rate\n",
      bench_layout() == KVLayout::HND ? "HND" : "NHD", copy);
  std::printf(
      "| group | batch | context | bf16 cuda-core (us) | bf16 tensor-core (us) | fp8 cuda-core "
      "(us) | fp8 tensor-core (us) | bf16 best fraction | fp8 best fraction | fp8 speed-up |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  std::FILE* csv = bench::open_csv(
      "fp8kv.csv",
      "group,batch,context,bf16_cc_us,bf16_tc_us,fp8_cc_us,fp8_tc_us,bf16_fraction,fp8_fraction");
  std::mt19937 rng(17);
  // Both pools live on the first backend's device (one device: any backend of it reads them).
  Tensor pools[2] = {make_pool(*backends[0], false, rng), make_pool(*backends[0], true, rng)};
  cuda_synchronize(*backends[0]);
  for (int group : {2, 4, 8})
    for (int batch : {64, 128, 256})
      for (int ctx : {2048, 8192}) {
        const CaseResult b = run_case(be_of, pools[0], false, group, batch, ctx, rng);
        const CaseResult f = run_case(be_of, pools[1], true, group, batch, ctx, rng);
        const double values = double(batch) * ctx * 2.0 * kHk * kD;  // K and V
        const double bs = std::min(b.seconds[0], b.seconds[1]);
        const double fs = std::min(f.seconds[0], f.seconds[1]);
        const double bf = values * 2.0 / bs / 1e12 / copy, ff = values / fs / 1e12 / copy;
        std::printf("| %d | %d | %d | %.1f | %.1f | %.1f | %.1f | %.3f | %.3f | %.2fx |\n", group,
                    batch, ctx, b.seconds[0] * 1e6, b.seconds[1] * 1e6, f.seconds[0] * 1e6,
                    f.seconds[1] * 1e6, bf, ff, bs / fs);
        std::fflush(stdout);
        if (csv)
          std::fprintf(csv, "%d,%d,%d,%.2f,%.2f,%.2f,%.2f,%.4f,%.4f\n", group, batch, ctx,
                       b.seconds[0] * 1e6, b.seconds[1] * 1e6, f.seconds[0] * 1e6,
                       f.seconds[1] * 1e6, bf, ff);
      }
  if (csv) std::fclose(csv);
}

}  // namespace nc

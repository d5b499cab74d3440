// GPU microbenchmarks of the CUDA backend:
//   decode  paged decode attention (one query row per request) over long contexts: achieved
//           bandwidth = bytes of K/V read / time
//   gemm    bf16 linear (cuBLASLt) throughput
//   cascade one decode step over a shared prefix + unique suffixes: plain 1-level paged attention
//           vs the 2-level cascade (shared level + own level), on one stream and overlapped on
//           two; against the floor (shared prefix bytes once + suffix bytes) / copy bandwidth, and
//           with the cost model's decision (CascadePlanner, Auto) for each case
//   cascade-ab  the shared level on FlashInfer's FA2 prefill vs its Hopper (sm90) prefill, at the
//           long-prefix cases (prefix 32k, batch 128, suffix 128/256): cascade time, speedup over
//           plain attention, fraction of the floor, and the shared level alone (TFLOP/s)
// Times are host wall-clock over many back-to-back calls, bracketed by cuda_synchronize(), after a
// warm-up; each configuration is measured `reps` times and the median is reported.
//
//   decode-grid  paged decode over batch 1-256 x context 512-32k against the copy bandwidth
//           measured in the same run
//   variants  the attention variants and the JIT (variant_bench.cc)
//   decode-choice  each decode kernel forced per GQA group, batch and context, against the copy
//           rate, with DecodeKernel::Auto's pick and the rules it suggests (decode_choice_bench.cc)
//   gemm-decode [config.json ...]  every GEMM candidate of linear() at the models' projections
//           and decode batch sizes, against the copy rate (gemm_decode_bench.cc)
//   moe, mla  issue #14's MoE expert GEMMs (moe_mla_bench.cc) and MLA decode (mla_bench.cc)
//   mla-forms  MLA's absorbed and expanded forms on prompts, chunks and decodes, and the rule's
//           pick (mla_forms_bench.cc)
//   sparse  issue #13's sparse decode attention against dense and its floor (sparse_bench.cc)
//   sparse-parts  its page-score and selection kernels alone (sparse_bench.cc)
//   decode-b1 [config.json ...]  a whole model's batch-1 decode step against its weight-read
//           floor, kernels a step from its graph, PDL and fusion on/off (decode_b1_bench.cc; also
//           run at the end of `decode`, for configs/qwen3-0.6b.json and llama-3-8b.json)
//   fp8     issue #17's FP8 linear: prefill TFLOP/s against the card's FP8 rate and bf16, decode
//           against the copy rate counting FP8 weight bytes (fp8_bench.cc)
// Usage: nc_gpu_bench [decode|decode-grid|gemm|cascade|cascade-ab|variants|decode-choice|
//                      gemm-decode|decode-b1|moe|mla|mla-forms|sparse|sparse-parts|fp8kv|fp8|all]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "bench_util.h"
#include "kv/cascade_planner.h"

namespace nc {
namespace {

using Clock = std::chrono::steady_clock;

using bench::copy_tbs;
using bench::fill_random_rows;
using bench::random_host;

// Seconds per call: 3 warm-up calls, then the median of `reps` runs of `iters` calls.
template <typename F>
double median_seconds(Backend& b, int iters, int reps, F&& f) {
  return bench::seconds_per_call(b, iters, reps, f);
}

// One decode step over `batch` requests of `ctx` tokens each (16/8 heads, head_dim 128, page 16,
// NHD, pages of different requests interleaved as a running server's pool would be), on a
// backend with options `opt`: seconds per call.
double decode_step_seconds(int batch, int ctx, std::mt19937& rng,
                           const CudaBackendOptions& opt = {}) {
  const int Hq = 16, Hk = 8, D = 128, page_size = 16;
  const int pages_per_seq = (ctx + page_size - 1) / page_size;
  const int num_pages = batch * pages_per_seq;
  AttentionShape shape{Hq, Hk, D, 1.0f / std::sqrt(float(D)),
                       KVCacheShape{1, num_pages, page_size, Hk, D, KVLayout::NHD}};
  std::vector<int32_t> perm(num_pages);
  for (int i = 0; i < num_pages; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  const AttentionStep step = bench::decode_step(batch, ctx, perm, page_size);
  auto be = make_cuda_backend(0, opt);
  Tensor kv = be->alloc({num_pages, 2, page_size, Hk, D}, DType::BF16);
  const int64_t row = 2 * page_size * Hk * D;
  fill_random_rows(*be, kv.view({num_pages, row}), 4096, rng);
  Tensor q = be->upload(random_host({batch, Hq * D}, rng));
  Tensor k = be->upload(random_host({batch, Hk * D}, rng));
  Tensor v = be->upload(random_host({batch, Hk * D}, rng));
  Tensor out = be->alloc({batch, Hq * D}, DType::BF16);
  auto plan = be->plan_attention(step, shape);
  const int calls = std::clamp(int(2e9 / (double(batch) * ctx * row / page_size * 2)), 5, 200);
  return median_seconds(*be, calls, 5, [&] { be->attention(*plan, q, k, v, kv, out); });
}

// Batch 128 at 2k and 4k context with each decode kernel, against a fixed peak.
void bench_decode(double peak_tbs) {
  std::printf(
      "\n## Paged decode attention: batch 128, 16 q heads / 8 kv heads, head_dim 128, page 16, "
      "NHD, bf16\n");
  std::printf("| context | kernel | time (us) | K/V bytes (GB) | TB/s | fraction of %.2f TB/s |\n",
              peak_tbs);
  std::printf("|---|---|---|---|---|---|\n");
  std::mt19937 rng(7);
  const int batch = 128;
  for (int ctx : {2048, 4096}) {
    for (DecodeKernel kernel : {DecodeKernel::CudaCores, DecodeKernel::TensorCores}) {
      CudaBackendOptions opt;
      opt.decode_kernel = kernel;
      const double s = decode_step_seconds(batch, ctx, rng, opt);
      const double bytes = double(batch) * ctx * 2.0 * 8 * 128 * 2.0;
      const double tbs = bytes / s / 1e12;
      std::printf(
          "| %d | %s | %.1f | %.3f | %.3f | %.3f |\n", ctx,
          kernel == DecodeKernel::CudaCores ? "cuda-core decode" : "tensor-core (prefill) decode",
          s * 1e6, bytes / 1e9, tbs, tbs / peak_tbs);
    }
  }
}

// The decode grid: batch 1-256 x context 512-32k, bandwidth against the copy measured in
// the same run (K/V pools over 20 GB are skipped).
void bench_decode_grid() {
  auto be = make_cuda_backend(0);
  const double copy = copy_tbs(*be);
  be.reset();
  std::printf(
      "\n## Paged decode grid: 16 q / 8 kv heads, head_dim 128, page 16, NHD, bf16, default "
      "kernel; copy %.3f TB/s (bytes read + written)\n",
      copy);
  std::printf("| batch | context | time (us) | K/V read (GB) | TB/s | fraction of copy |\n");
  std::printf("|---|---|---|---|---|---|\n");
  std::mt19937 rng(5);
  for (int batch : {1, 16, 64, 128, 256}) {
    for (int ctx : {512, 2048, 8192, 32768}) {
      const double bytes = double(batch) * ctx * 2.0 * 8 * 128 * 2.0;
      if (bytes > 20e9) continue;
      const double s = decode_step_seconds(batch, ctx, rng);
      const double tbs = bytes / s / 1e12;
      std::printf("| %d | %d | %.1f | %.3f | %.3f | %.3f |\n", batch, ctx, s * 1e6, bytes / 1e9,
                  tbs, tbs / copy);
      std::fflush(stdout);
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

// Times f() (a few calls per repetition, ~8 ms each), median of 5, in microseconds.
template <typename F>
double time_us(Backend& b, F&& f) {
  f();
  cuda_synchronize(b);
  const auto t0 = Clock::now();
  f();
  cuda_synchronize(b);
  const double one = std::chrono::duration<double>(Clock::now() - t0).count();
  const int iters = std::clamp(int(8e-3 / std::max(one, 1e-7)), 3, 200);
  return median_seconds(b, iters, 5, f) * 1e6;
}

// Device-to-device copy bandwidth (bytes read + written), TB/s: the floor's yardstick.

struct CascadeCase {
  int prefix, batch, suffix;  // tokens; suffix = each request's own tokens, the new one included
};

// One decode per request of case c: pages [0, prefix/ps) shared by all, then each request's own
// suffix pages drawn shuffled from the rest of a pool of num_pages.
std::vector<CascadeRequest> shared_prefix_decodes(const CascadeCase& c, int ps, int num_pages,
                                                  std::mt19937& rng) {
  const int prefix_pages = c.prefix / ps, own_pages = (c.suffix + ps - 1) / ps;
  std::vector<int32_t> rest(size_t(num_pages - prefix_pages));
  for (size_t i = 0; i < rest.size(); ++i) rest[i] = int32_t(prefix_pages + i);
  std::shuffle(rest.begin(), rest.end(), rng);
  std::vector<CascadeRequest> reqs;
  for (int b = 0; b < c.batch; ++b) {
    CascadeRequest r;
    r.q_len = 1;
    r.kv_len = c.prefix + c.suffix;
    for (int p = 0; p < prefix_pages; ++p) r.pages.push_back(p);
    r.pages.insert(r.pages.end(), rest.begin() + int64_t(b) * own_pages,
                   rest.begin() + int64_t(b + 1) * own_pages);
    reqs.push_back(std::move(r));
  }
  return reqs;
}

// All cases of one head configuration over one page pool: the shared prefix is pages
// [0, prefix / page), each request's own pages are drawn from the rest, shuffled.
void bench_cascade_heads(int Hq, int Hk, const std::vector<CascadeCase>& cases, double copy,
                         std::FILE* csv) {
  const int D = 128, ps = 16;
  int num_pages = 0;
  for (const CascadeCase& c : cases)
    num_pages = std::max(num_pages, c.prefix / ps + c.batch * ((c.suffix + ps - 1) / ps));
  const double kv_token = 2.0 * Hk * D * 2;  // K+V bytes of one token
  CascadeCostModel cost;
  cost.kv_bytes_per_token = kv_token;
  cost.flops_per_row_token = 4.0 * Hq * D;
  std::printf(
      "\n## Cascade decode: %d q heads / %d kv heads, head_dim %d, page %d, NHD, bf16 "
      "(pool %.2f GB)\n",
      Hq, Hk, D, ps, num_pages * ps * kv_token / 1e9);
  std::printf(
      "| prefix | batch | suffix | plain (us) | cascade 1 stream (us) | cascade 2 streams (us) | "
      "cascade speedup | planner | planner's speedup | floor (us) | fraction of floor | shared "
      "level alone (us, TFLOP/s) | own level alone (us) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  struct Cell {
    int prefix, batch;
    bool on;
    double speedup;  // plain / cascade (the backend's default, 2 streams)
  };
  std::vector<Cell> pivot;  // suffix 128

  CudaBackendOptions o1, o2;
  o1.overlap_cascade_levels = false;
  o2.overlap_cascade_levels = true;
  auto one = make_cuda_backend(0, o1), two = make_cuda_backend(0, o2);
  std::mt19937 rng(23);
  const int64_t page_elems = int64_t(2) * ps * Hk * D;
  Tensor pool = one->alloc({num_pages, page_elems}, DType::BF16);
  fill_random_rows(*one, pool, 64, rng);
  int max_batch = 0;
  for (const CascadeCase& c : cases) max_batch = std::max(max_batch, c.batch);
  Tensor q = one->upload(random_host({max_batch, Hq * D}, rng));
  Tensor k = one->upload(random_host({max_batch, Hk * D}, rng));
  Tensor v = one->upload(random_host({max_batch, Hk * D}, rng));
  Tensor out = one->alloc({max_batch, Hq * D}, DType::BF16);
  cuda_synchronize(*one);
  AttentionShape shape{Hq, Hk, D, 1.0f / std::sqrt(float(D)),
                       KVCacheShape{1, num_pages, ps, Hk, D, KVLayout::NHD}};

  for (const CascadeCase& c : cases) {
    const std::vector<CascadeRequest> reqs = shared_prefix_decodes(c, ps, num_pages, rng);
    const AttentionStep plain = CascadePlanner(ps, CascadeMode::Off).plan(reqs).step;
    const AttentionStep casc = CascadePlanner(ps, CascadeMode::Always).plan(reqs).step;
    const bool planner_on =
        CascadePlanner(ps, CascadeMode::Auto, cost).plan(reqs).stats.num_levels > 1;
    const Tensor qb = q.slice(0, c.batch), kb = k.slice(0, c.batch), vb = v.slice(0, c.batch);
    const Tensor ob = out.slice(0, c.batch);
    auto run = [&](Backend& be, const AttentionStep& st) {
      auto plan = be.plan_attention(st, shape);
      const double us = time_us(be, [&] { be.attention(*plan, qb, kb, vb, pool, ob); });
      cuda_synchronize(be);
      return us;
    };
    const double t_plain = run(*one, plain);
    const double t_one = casc.levels.size() > 1 ? run(*one, casc) : t_plain;
    const double t_two = casc.levels.size() > 1 ? run(*two, casc) : t_plain;
    // The shared level alone (its rows appended into the prefix's last slots: harmless here)
    // and the own level alone, for the larger prefixes.
    double t_shared = 0, t_own = 0, tflops = 0;
    if (casc.levels.size() > 1 && c.prefix >= 4096) {
      AttentionStep shared_only{c.batch, {casc.levels[0]}};
      AttentionStep own_only{c.batch, {casc.levels[1]}};
      t_shared = run(*one, shared_only);
      t_own = run(*one, own_only);
      tflops = 4.0 * c.batch * Hq * double(c.prefix) * D / (t_shared * 1e-6) / 1e12;
    }
    const double floor_us =
        (double(c.prefix) + double(c.batch) * c.suffix) * kv_token / (copy * 1e12) * 1e6;
    std::printf("| %d | %d | %d | %.1f | %.1f | %.1f | %.2fx | %s | %.2fx | %.1f | %.2f | ",
                c.prefix, c.batch, c.suffix, t_plain, t_one, t_two, t_plain / t_two,
                planner_on ? "cascade" : "plain", planner_on ? t_plain / t_two : 1.0, floor_us,
                floor_us / t_two);
    if (c.suffix == 128) pivot.push_back({c.prefix, c.batch, planner_on, t_plain / t_two});
    if (t_shared > 0)
      std::printf("%.1f (%.0f) | %.1f |\n", t_shared, tflops, t_own);
    else
      std::printf("- | - |\n");
    std::fflush(stdout);
    if (csv)
      std::fprintf(csv, "%d,%d,%d,%d,%d,%d,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f\n", Hq, Hk, c.prefix,
                   c.batch, c.suffix, int(planner_on), t_plain, t_one, t_two, floor_us, t_shared,
                   t_own);
  }
  cuda_synchronize(*one);
  cuda_synchronize(*two);
  // Where the planner switches: its decision and the measured cascade speedup, suffix 128.
  std::vector<int> prefixes, batches;
  for (const Cell& c : pivot) {
    if (std::find(prefixes.begin(), prefixes.end(), c.prefix) == prefixes.end())
      prefixes.push_back(c.prefix);
    if (std::find(batches.begin(), batches.end(), c.batch) == batches.end())
      batches.push_back(c.batch);
  }
  std::printf(
      "\nPlanner decision (cost model defaults) and measured cascade speedup, suffix 128:\n");
  std::printf("| prefix \\ batch |");
  for (int b : batches) std::printf(" %d |", b);
  std::printf("\n|---|");
  for (size_t i = 0; i < batches.size(); ++i) std::printf("---|");
  std::printf("\n");
  for (int p : prefixes) {
    std::printf("| %d |", p);
    for (int b : batches) {
      for (const Cell& c : pivot)
        if (c.prefix == p && c.batch == b)
          std::printf(" %s (%.2fx) |", c.on ? "**cascade**" : "plain", c.speedup);
    }
    std::printf("\n");
  }
}

void bench_cascade() {
  auto be = make_cuda_backend(0);
  const double copy = copy_tbs(*be);
  be.reset();
  std::printf("\n## Device-to-device copy: %.3f TB/s (bytes read + written, 1 GiB)\n", copy);
  const char* dir = std::getenv("OUT");
  std::FILE* csv = dir ? std::fopen((std::string(dir) + "/cascade.csv").c_str(), "w") : nullptr;
  if (csv)
    std::fprintf(csv,
                 "hq,hk,prefix,batch,suffix,planner,plain_us,cascade1_us,cascade2_us,floor_us,"
                 "shared_us,own_us\n");
  std::vector<CascadeCase> mha;
  for (int prefix : {16, 64, 128, 256, 512, 1024, 4096, 32768})
    for (int batch : {16, 64, 128, 256})
      for (int suffix : {128, 256, 1024})
        if (suffix != 256 || batch == 128) mha.push_back({prefix, batch, suffix});
  bench_cascade_heads(32, 32, mha, copy, csv);
  std::vector<CascadeCase> gqa;
  for (int prefix : {128, 1024, 32768})
    for (int suffix : {128, 1024}) gqa.push_back({prefix, 128, suffix});
  bench_cascade_heads(32, 8, gqa, copy, csv);
  if (csv) std::fclose(csv);
}

// One cascade decode step over a shared prefix, the shared level on each kernel. Pages: the
// prefix first, each request's own pages shuffled over the rest of the pool.
void bench_cascade_ab_case(int Hq, int Hk, const CascadeCase& c, double copy) {
  const int D = 128, ps = 16;
  const int prefix_pages = c.prefix / ps, own_pages = (c.suffix + ps - 1) / ps;
  const int num_pages = prefix_pages + c.batch * own_pages;
  const double kv_token = 2.0 * Hk * D * 2;
  std::mt19937 rng(31);
  const std::vector<CascadeRequest> reqs = shared_prefix_decodes(c, ps, num_pages, rng);
  const AttentionStep plain = CascadePlanner(ps, CascadeMode::Off).plan(reqs).step;
  const AttentionStep casc = CascadePlanner(ps, CascadeMode::Always).plan(reqs).step;
  if (casc.levels.size() < 2) return;
  const AttentionStep shared_only{c.batch, {casc.levels[0]}};
  AttentionShape shape{Hq, Hk, D, 1.0f / std::sqrt(float(D)),
                       KVCacheShape{1, num_pages, ps, Hk, D, KVLayout::NHD}};
  CudaBackendOptions fa2_opt, sm90_opt;
  fa2_opt.shared_level_kernel = SharedLevelKernel::FA2;
  sm90_opt.shared_level_kernel = SharedLevelKernel::SM90;
  auto fa2 = make_cuda_backend(0, fa2_opt), sm90 = make_cuda_backend(0, sm90_opt);
  const int64_t page_elems = int64_t(2) * ps * Hk * D;
  Tensor pool = fa2->alloc({num_pages, page_elems}, DType::BF16);
  fill_random_rows(*fa2, pool, 64, rng);
  Tensor q = fa2->upload(random_host({c.batch, Hq * D}, rng));
  Tensor k = fa2->upload(random_host({c.batch, Hk * D}, rng));
  Tensor v = fa2->upload(random_host({c.batch, Hk * D}, rng));
  Tensor out = fa2->alloc({c.batch, Hq * D}, DType::BF16);
  cuda_synchronize(*fa2);
  auto run = [&](Backend& be, const AttentionStep& st, bool* used_sm90) {
    auto plan = be.plan_attention(st, shape);
    if (used_sm90) *used_sm90 = cuda_plan_uses_sm90_prefill(*plan)[0];
    const double us = time_us(be, [&] { be.attention(*plan, q, k, v, pool, out); });
    cuda_synchronize(be);
    return us;
  };
  bool on_sm90 = false;
  const double t_plain = run(*fa2, plain, nullptr);
  const double t_fa2 = run(*fa2, casc, nullptr), t_sm90 = run(*sm90, casc, &on_sm90);
  const double s_fa2 = run(*fa2, shared_only, nullptr), s_sm90 = run(*sm90, shared_only, nullptr);
  const double flop = 4.0 * c.batch * Hq * double(c.prefix) * D;
  const double floor_us =
      (double(c.prefix) + double(c.batch) * c.suffix) * kv_token / (copy * 1e12) * 1e6;
  std::printf(
      "| %d/%d | %d | %d | %d | %.1f | %.1f (%.2fx, %.2f) | %.1f (%.2fx, %.2f)%s | %.1f | %.1f "
      "(%.0f) | %.1f (%.0f) |\n",
      Hq, Hk, c.prefix, c.batch, c.suffix, t_plain, t_fa2, t_plain / t_fa2, floor_us / t_fa2,
      t_sm90, t_plain / t_sm90, floor_us / t_sm90, on_sm90 ? "" : " (sm90 unavailable: FA2)",
      floor_us, s_fa2, flop / (s_fa2 * 1e-6) / 1e12, s_sm90, flop / (s_sm90 * 1e-6) / 1e12);
  std::fflush(stdout);
}

void bench_cascade_ab() {
  auto be = make_cuda_backend(0);
  const double copy = copy_tbs(*be);
  be.reset();
  std::printf("\n## Cascade shared level: FA2 vs sm90 prefill (copy %.3f TB/s; 2 streams)\n", copy);
  std::printf(
      "| heads | prefix | batch | suffix | plain (us) | cascade FA2 (us, speedup, fraction of "
      "floor) | cascade sm90 (us, speedup, fraction of floor) | floor (us) | shared level FA2 "
      "(us, TFLOP/s) | shared level sm90 (us, TFLOP/s) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (auto [hq, hk] : {std::pair{32, 32}, std::pair{32, 8}})
    for (CascadeCase c :
         {CascadeCase{32768, 128, 128}, CascadeCase{32768, 128, 256}, CascadeCase{32768, 64, 128},
          CascadeCase{4096, 128, 128}, CascadeCase{32768, 256, 128}})
      bench_cascade_ab_case(hq, hk, c, copy);
}

}  // namespace
}  // namespace nc

namespace nc {
void bench_variants();                                     // variant_bench.cc
void bench_decode_choice();                                // decode_choice_bench.cc
void bench_gemm_decode(std::vector<std::string> configs);  // gemm_decode_bench.cc
void bench_moe_mla(const std::string& what);               // moe_mla_bench.cc
void bench_mla_forms();                                    // mla_forms_bench.cc
void bench_sparse();                                       // sparse_bench.cc
void bench_sparse_parts();                                 // sparse_bench.cc
void bench_fp8kv();                                        // fp8kv_bench.cc
void bench_decode_b1(std::vector<std::string> configs);    // decode_b1_bench.cc
void bench_fp8();                                          // fp8_bench.cc
}  // namespace nc

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "all";
  try {
    auto be = nc::make_cuda_backend(0);
    std::printf("# nc_gpu_bench on %s\n", be->name().c_str());
    be.reset();
    if (what == "decode" || what == "all") nc::bench_decode(3.0);
    if (what == "decode" || what == "all") nc::bench_decode_b1({});  // qwen3-0.6b, llama-3-8b
    if (what == "decode-b1") nc::bench_decode_b1({argv + 2, argv + argc});
    if (what == "decode-grid" || what == "all") nc::bench_decode_grid();
    if (what == "gemm" || what == "all") nc::bench_gemm(790.0);
    if (what == "cascade" || what == "all") nc::bench_cascade();
    if (what == "cascade-ab" || what == "all") nc::bench_cascade_ab();
    if (what == "variants" || what == "all") nc::bench_variants();
    if (what == "decode-choice") nc::bench_decode_choice();
    if (what == "gemm-decode") nc::bench_gemm_decode({argv + 2, argv + argc});
    nc::bench_moe_mla(what);  // moe, mla
    if (what == "mla-forms") nc::bench_mla_forms();
    if (what == "sparse") nc::bench_sparse();
    if (what == "sparse-parts") nc::bench_sparse_parts();
    if (what == "fp8kv") nc::bench_fp8kv();
    if (what == "fp8") nc::bench_fp8();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nc_gpu_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}

// nc_gpu_bench moe / mla: issue #14's kernel numbers (docs/benchmarks.md).
//
//   moe  Qwen3-30B-A3B's expert shape (128 experts, top-8, hidden 2048, moe_intermediate 768)
//        at 1..2048 tokens a step, random routing (8 distinct experts a token, uniform):
//        Backend::moe_experts (permutation, the grouped GEMMs, SiLU-GLU, un-permutation) through
//        each GEMM path (NC_MOE_GEMM=grouped: CUTLASS's tensor-core grouped GEMM; simt: the
//        fallback), against the bytes of the experts the step actually touches / the copy
//        bandwidth and against a bf16 GEMM peak (cuBLASLt, 8192^3), both measured in the same
//        process; beside them the baseline of one cuBLASLt GEMM per expert with tokens
//        (Backend::linear over the expert's contiguous rows, gate_up, SiLU-GLU, down: the
//        permutation not included); then routing alone (Backend::moe_route, softmax top-8
//        renormalised) and the permutation's fixed cost (moe_experts at moe_intermediate 16, where
//        the GEMMs are negligible, default path).
//   mla  MLA decode attention, FlashInfer's kernels beside our fallback (mla_bench.cc).
// Times: host wall-clock over back-to-back calls after a warm-up, median of 5 runs.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "bench_util.h"

namespace nc {
namespace {

using Clock = std::chrono::steady_clock;

// Seconds per call, ~20 ms a run, median of 5 (bench_util.h).
template <typename F>
double seconds_per_call(Backend& b, F&& f) {
  return bench::auto_seconds_per_call(b, f, 20e-3);
}

Tensor random_tensor(Backend& be, const Shape& shape, uint64_t seed, float scale) {
  Tensor t = be.alloc(shape, DType::BF16);
  be.fill_uniform(t, seed, -scale, scale);
  return t;
}

using bench::copy_tbs;

using bench::gemm_peak_tflops;

Tensor upload_i32(Backend& be, const std::vector<int32_t>& v) {
  Tensor t = be.alloc({int64_t(v.size())}, DType::I32);
  be.copy_from_host(t, v.data());
  return t;
}

// ---- moe ----

constexpr int kE = 128, kK = 8, kH = 2048, kI = 768;

struct Routing {
  std::vector<int32_t> ids;  // [T, k], distinct per token
  std::vector<int> count;    // tokens per expert
};

Routing random_routing(int T, std::mt19937& rng) {
  Routing r;
  r.count.assign(kE, 0);
  std::vector<int32_t> all(kE);
  std::iota(all.begin(), all.end(), 0);
  for (int t = 0; t < T; ++t) {
    std::shuffle(all.begin(), all.end(), rng);
    for (int j = 0; j < kK; ++j) r.ids.push_back(all[size_t(j)]), ++r.count[size_t(all[j])];
  }
  return r;
}

// One cuBLASLt GEMM per expert with tokens over its contiguous rows (the baseline).
double per_expert_seconds(Backend& be, const Routing& r, int T, const Tensor& gate_up,
                          const Tensor& down) {
  const int64_t pairs = int64_t(T) * kK;
  Tensor xs = random_tensor(be, {pairs, kH}, 7, 1.0f);
  Tensor gu = be.alloc({pairs, 2 * kI}, DType::BF16), act = be.alloc({pairs, kI}, DType::BF16);
  Tensor ys = be.alloc({pairs, kH}, DType::BF16);
  return seconds_per_call(be, [&] {
    int64_t off = 0;
    for (int e = 0; e < kE; ++e) {
      const int64_t n = r.count[size_t(e)];
      if (n == 0) continue;
      const Tensor w1 = gate_up.slice(e, e + 1).view({2 * kI, kH});
      const Tensor w2 = down.slice(e, e + 1).view({kH, kI});
      be.linear(xs.slice(off, off + n), w1, Tensor(), gu.slice(off, off + n));
      be.silu_and_mul(gu.slice(off, off + n), act.slice(off, off + n));
      be.linear(act.slice(off, off + n), w2, Tensor(), ys.slice(off, off + n));
      off += n;
    }
  });
}

// moe_experts through GEMM path `path` (NC_MOE_GEMM), seconds per call.
double experts_seconds(Backend& be, const char* path, const Tensor& x, const Tensor& ids,
                       const Tensor& w, const Tensor& gate_up, const Tensor& down, Tensor out) {
  setenv("NC_MOE_GEMM", path, 1);
  const double s = seconds_per_call(be, [&] { be.moe_experts(x, ids, w, gate_up, down, out); });
  unsetenv("NC_MOE_GEMM");
  return s;
}

void bench_moe() {
  auto be = make_cuda_backend(0);
  std::mt19937 rng(14);
  const double copy = copy_tbs(*be), peak = gemm_peak_tflops(*be);
  std::printf(
      "\n## MoE experts: Qwen3-30B-A3B shape (%d experts, top-%d, hidden %d, moe_intermediate "
      "%d), bf16; copy %.3f TB/s, bf16 GEMM peak (cuBLASLt 8192^3) %.0f TFLOP/s\n"
      "Each GEMM cell: us; expert bytes / time in TB/s (fraction of copy); TFLOP/s (fraction of "
      "peak).\n",
      kE, kK, kH, kI, copy, peak);
  std::printf(
      "| tokens | experts hit | grouped (CUTLASS) | SIMT | cuBLASLt per expert | grouped vs SIMT "
      "| grouped vs cuBLASLt loop | routing (us) | permutation fixed cost (us) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  Tensor gate_up = random_tensor(*be, {kE, 2 * kI, kH}, 3, 0.05f);
  Tensor down = random_tensor(*be, {kE, kH, kI}, 4, 0.05f);
  Tensor gu_small = random_tensor(*be, {kE, 32, kH}, 5, 0.05f);
  Tensor dn_small = random_tensor(*be, {kE, kH, 16}, 6, 0.05f);
  const int max_T = 2048;
  be->reserve_moe(max_T, kK, kE, kH, kI);
  for (int T : {1, 16, 64, 256, 2048}) {
    const Routing r = random_routing(T, rng);
    Tensor x = random_tensor(*be, {T, kH}, 8, 1.0f), out = be->alloc({T, kH}, DType::BF16);
    Tensor ids = upload_i32(*be, r.ids).view({T, kK});
    Tensor w = be->alloc({T, kK}, DType::F32);
    be->fill_uniform(w, 9, 0.0f, 0.25f);
    const double t_g = experts_seconds(*be, "grouped", x, ids, w, gate_up, down, out);
    const double t_s = experts_seconds(*be, "simt", x, ids, w, gate_up, down, out);
    const double t_base = per_expert_seconds(*be, r, T, gate_up, down);
    const double t_fixed =
        seconds_per_call(*be, [&] { be->moe_experts(x, ids, w, gu_small, dn_small, out); });
    Tensor logits = be->alloc({T, kE}, DType::F32), rid = be->alloc({T, kK}, DType::I32);
    be->fill_uniform(logits, 10, -4.0f, 4.0f);
    const MoeRouting routing{.num_experts = kE, .top_k = kK, .renormalize = true};
    const double t_route =
        seconds_per_call(*be, [&] { be->moe_route(logits, Tensor(), routing, rid, w); });
    const int hit = int(std::count_if(r.count.begin(), r.count.end(), [](int c) { return c; }));
    const double bytes = double(hit) * 3.0 * kI * kH * 2.0;
    const double flop = 6.0 * double(T) * kK * kH * kI;
    auto cell = [&](double t) {
      std::printf(" %.1f; %.2f (%.2f); %.1f (%.3f) |", t * 1e6, bytes / t / 1e12,
                  bytes / t / 1e12 / copy, flop / t / 1e12, flop / t / 1e12 / peak);
    };
    std::printf("| %d | %d |", T, hit);
    cell(t_g);
    cell(t_s);
    cell(t_base);
    std::printf(" %.2fx | %.2fx | %.1f | %.1f |\n", t_s / t_g, t_base / t_g, t_route * 1e6,
                t_fixed * 1e6);
    std::fflush(stdout);
  }
}

}  // namespace

void bench_mla();  // mla_bench.cc

void bench_moe_mla(const std::string& what) {
  if (what == "moe" || what == "all") bench_moe();
  if (what == "mla" || what == "all") bench_mla();
}

}  // namespace nc

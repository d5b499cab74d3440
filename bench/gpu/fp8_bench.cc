// nc_gpu_bench fp8: the CUDA backend's FP8 linear (backend/cuda/fp8_gemm.h) against bf16, all in
// one process on one GPU:
//   - the card's FP8 rate: cuBLASLt's FP8 GEMM alone (outer-vector scales, no quantiser) on a
//     large square shape (8192^3), with the bf16 GEMM's rate on the same shape beside it;
//   - prefill: 4096 x 4096 x 4096 and the Llama-3-8B projections (qkv, o, gate_up, down) at
//     N = 2048 rows: TFLOP/s of the whole FP8 linear (quantising x, then the GEMM), of the GEMM
//     alone, their fraction of the FP8 rate, and bf16's linear beside them;
//   - decode: the same projections at N = 1, 2, 4, 8, 16, 64, 128, 256 rows: the rule's choice
//     (linear()), the GEMV and cuBLASLt forced, and bf16's linear, each as us and as the
//     weights' bytes (FP8: fp8_packed_bytes; bf16: 2 a weight) / time / the device-to-device copy
//     rate measured in the same run (bytes read + written, as the other subs count it). The
//     weights rotate over copies spanning at least 512 MB, so that no read hits the L2 cache.
// CSV: $OUT/fp8.csv, one line per measurement (rate: TFLOP/s for peak and prefill lines, the
// fraction of the copy rate for decode lines).
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cuda/fp8_gemm.h"
#include "bench_util.h"
#include "core/error.h"

namespace nc {
namespace {

using cuda_host::Fp8Path;

constexpr double kRotateBytes = 512e6;

struct Shape3 {
  const char* name;
  int64_t m, k;  // weight [m, k]
};

// Llama-3-8B (hidden 4096, 32/8 heads of 128, intermediate 14336).
const Shape3 kLlama8B[] = {{"8B qkv", 6144, 4096},
                           {"8B o", 4096, 4096},
                           {"8B gate_up", 28672, 4096},
                           {"8B down", 4096, 14336}};

struct Weights {
  std::vector<Tensor> fp8, bf16;  // rotating copies
  double fp8_bytes = 0, bf16_bytes = 0;
};

Weights make_weights(Backend& be, const Shape3& s, std::mt19937& rng, int copies) {
  Weights w;
  const HostTensor h = bench::random_host({s.m, s.k}, rng, 0.02f);
  const Fp8Weight q = quantize_fp8_weight(h);
  for (int i = 0; i < copies; ++i) w.fp8.push_back(be.upload_fp8_linear(q));
  w.bf16.push_back(be.upload(h));
  for (int i = 1; i < copies; ++i) {
    w.bf16.push_back(be.alloc({s.m, s.k}, DType::BF16));
    be.copy_rows(w.bf16[0], w.bf16.back());
  }
  w.fp8_bytes = double(fp8_packed_bytes(s.m, s.k));
  w.bf16_bytes = double(s.m) * double(s.k) * 2;
  return w;
}

// Microseconds per call of f(r) with r rotating over `copies` weights.
template <typename F>
double us_rotating(Backend& be, size_t copies, F&& f) {
  size_t r = 0;
  return 1e6 * bench::auto_seconds_per_call(be, [&] {
           f(r);
           r = (r + 1) % copies;
         });
}

double tflops(int64_t n, int64_t m, int64_t k, double us) {
  return 2.0 * double(n) * double(m) * double(k) / (us * 1e-6) / 1e12;
}

// The card's FP8 and bf16 GEMM rates on an 8192^3 product (TFLOP/s).
std::pair<double, double> peak_rates(std::mt19937& rng, std::FILE* csv) {
  auto be = make_cuda_backend(0);
  const int64_t n = 8192;
  const Shape3 s{"square", n, n};
  Weights w = make_weights(*be, s, rng, 1);
  Tensor x = be->upload(bench::random_host({n, n}, rng));
  Tensor out = be->alloc({n, n}, DType::BF16);
  auto& fp8 = cuda_host::cuda_fp8_gemm(*be);
  fp8.linear(x, w.fp8[0], Tensor(), out, Fp8Path::CublasLt);  // the scratch holds x's codes
  const double fp8_us = us_rotating(
      *be, 1, [&](size_t) { fp8.linear(x, w.fp8[0], Tensor(), out, Fp8Path::CublasLt, false); });
  const double bf16_us = us_rotating(*be, 1, [&](size_t) { be->linear(x, w.bf16[0], {}, out); });
  const double f = tflops(n, n, n, fp8_us), b = tflops(n, n, n, bf16_us);
  std::printf("\nFP8 rate (cuBLASLt FP8 GEMM alone, %ld^3): %.1f TFLOP/s; bf16: %.1f TFLOP/s\n",
              long(n), f, b);
  if (csv)
    std::fprintf(csv, "peak,square,%ld,%ld,%ld,fp8 gemm,%.2f,%.2f\n", long(n), long(n), long(n),
                 fp8_us, f);
  if (csv)
    std::fprintf(csv, "peak,square,%ld,%ld,%ld,bf16,%.2f,%.2f\n", long(n), long(n), long(n),
                 bf16_us, b);
  return {f, b};
}

void prefill(double fp8_peak, std::mt19937& rng, std::FILE* csv) {
  std::printf(
      "\n## FP8 prefill GEMMs: out[N, M] = x[N, K] @ w[M, K]^T, bf16 in and out; FP8 rate %.1f "
      "TFLOP/s (same run)\n| shape | N | K | M | fp8 linear TFLOP/s | fp8 GEMM alone TFLOP/s | "
      "linear / FP8 rate | bf16 TFLOP/s | fp8 linear / bf16 |\n|---|---|---|---|---|---|---|---|"
      "---|\n",
      fp8_peak);
  std::vector<std::pair<Shape3, int64_t>> cases = {{{"square", 4096, 4096}, 4096}};
  for (const Shape3& s : kLlama8B) cases.push_back({s, 2048});
  for (const auto& [s, n] : cases) {
    auto be = make_cuda_backend(0);
    auto& fp8 = cuda_host::cuda_fp8_gemm(*be);
    Weights w = make_weights(*be, s, rng, 1);
    Tensor x = be->upload(bench::random_host({n, s.k}, rng));
    Tensor out = be->alloc({n, s.m}, DType::BF16);
    const double lin = us_rotating(*be, 1, [&](size_t) { be->linear(x, w.fp8[0], {}, out); });
    const double alone = us_rotating(
        *be, 1, [&](size_t) { fp8.linear(x, w.fp8[0], Tensor(), out, Fp8Path::CublasLt, false); });
    const double bf = us_rotating(*be, 1, [&](size_t) { be->linear(x, w.bf16[0], {}, out); });
    const double tl = tflops(n, s.m, s.k, lin), ta = tflops(n, s.m, s.k, alone),
                 tb = tflops(n, s.m, s.k, bf);
    std::printf("| %s | %ld | %ld | %ld | %.1f | %.1f | %.2f | %.1f | %.2fx |\n", s.name, long(n),
                long(s.k), long(s.m), tl, ta, tl / fp8_peak, tb, tl / tb);
    std::fflush(stdout);
    if (csv)
      for (auto [what, us, t] : {std::tuple{"fp8 linear", lin, tl},
                                 std::tuple{"fp8 gemm", alone, ta}, std::tuple{"bf16", bf, tb}})
        std::fprintf(csv, "prefill,%s,%ld,%ld,%ld,%s,%.2f,%.2f\n", s.name, long(n), long(s.k),
                     long(s.m), what, us, t);
  }
}

std::string cell(double us, double bytes, double copy) {
  if (us <= 0) return "-";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.1f (%.2f)", us, bytes / (us * 1e-6) / 1e12 / copy);
  return buf;
}

void decode(double copy, std::mt19937& rng, std::FILE* csv) {
  std::printf(
      "\n## FP8 decode GEMMs; copy %.3f TB/s (read + written); each cell: us (weight bytes / time "
      "/ copy); FP8 bytes = codes + scales\n| shape | rows | rule | fp8 (rule) | fp8 gemv | fp8 "
      "cuBLASLt | bf16 linear | fp8 / bf16 time |\n|---|---|---|---|---|---|---|---|\n",
      copy);
  for (const Shape3& s : kLlama8B) {
    auto be = make_cuda_backend(0);
    auto& fp8 = cuda_host::cuda_fp8_gemm(*be);
    const int copies = std::clamp(int(kRotateBytes / (double(s.m) * s.k) + 0.999), 1, 64);
    Weights w = make_weights(*be, s, rng, copies);
    for (int64_t n : {1, 2, 4, 8, 16, 64, 128, 256}) {
      Tensor x = be->upload(bench::random_host({n, s.k}, rng));
      Tensor out = be->alloc({n, s.m}, DType::BF16);
      const Fp8Path rule = fp8.chosen(x, w.fp8[0], Tensor(), out);
      auto run = [&](Fp8Path p) {
        return us_rotating(*be, w.fp8.size(),
                           [&](size_t r) { fp8.linear(x, w.fp8[r], Tensor(), out, p); });
      };
      const double auto_us = run(Fp8Path::Auto);
      const double gemv_us = n <= 16 ? run(Fp8Path::Gemv) : -1;
      double lt_us = -1;  // "-" where cuBLASLt has no FP8 algorithm for the shape
      try {
        lt_us = run(Fp8Path::CublasLt);
      } catch (const Error& e) {
        std::fprintf(stderr, "%s rows %ld: %s\n", s.name, long(n), e.what());
      }
      const double bf_us =
          us_rotating(*be, w.bf16.size(), [&](size_t r) { be->linear(x, w.bf16[r], {}, out); });
      std::printf("| %s | %ld | %s | %s | %s | %s | %s | %.2f |\n", s.name, long(n),
                  cuda_host::fp8_path_name(rule), cell(auto_us, w.fp8_bytes, copy).c_str(),
                  cell(gemv_us, w.fp8_bytes, copy).c_str(), cell(lt_us, w.fp8_bytes, copy).c_str(),
                  cell(bf_us, w.bf16_bytes, copy).c_str(), auto_us / bf_us);
      std::fflush(stdout);
      if (csv)
        for (auto [what, us, bytes] : {std::tuple{"fp8 rule", auto_us, w.fp8_bytes},
                                       std::tuple{"fp8 gemv", gemv_us, w.fp8_bytes},
                                       std::tuple{"fp8 cublaslt", lt_us, w.fp8_bytes},
                                       std::tuple{"bf16", bf_us, w.bf16_bytes}})
          if (us > 0)
            std::fprintf(csv, "decode,%s,%ld,%ld,%ld,%s,%.2f,%.4f\n", s.name, long(n), long(s.k),
                         long(s.m), what, us, bytes / (us * 1e-6) / 1e12 / copy);
    }
  }
}

}  // namespace

void bench_fp8() {
  std::mt19937 rng(17);
  double copy = 0;
  {
    auto be = make_cuda_backend(0);
    copy = bench::copy_tbs(*be);
  }
  std::FILE* csv = bench::open_csv("fp8.csv", "part,shape,n,k,m,what,us,rate");
  // Where cuBLASLt offers no FP8 algorithm with outer-vector scales (CUDA 13.0 on an H100,
  // 2026-12-06), the rate and prefill tables cannot run: say so and still time the decode rows.
  try {
    const double fp8_peak = peak_rates(rng, csv).first;
    prefill(fp8_peak, rng, csv);
  } catch (const Error& e) {
    std::printf(
        "\nFP8 GEMM through cuBLASLt unavailable on this GPU (%s): no FP8 rate or "
        "prefill table\n",
        e.what());
  }
  decode(copy, rng, csv);
  if (csv) std::fclose(csv);
}

}  // namespace nc

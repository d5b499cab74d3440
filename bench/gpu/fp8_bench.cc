// nc_gpu_bench fp8: the CUDA backend's FP8 linear (backend/cuda/fp8_gemm.h) against bf16, all in
// one process on one GPU:
//   - the card's FP8 rate: cuBLASLt's FP8 GEMM alone with scalar (unit) scales, no quantiser, no
//     epilogue (lt-epilogue's product) on 8192^3, with the bf16 GEMM's rate on the same shape,
//     lt-outer's product where this cuBLASLt has it, and the scalar GEMM with fast accumulation
//     on (what keeping it off costs);
//   - prefill: 4096 x 4096 x 4096 and the Llama-3-8B projections (qkv 6144x4096, o 4096x4096,
//     gate_up 28672x4096, down 4096x14336) at N = 2048 and 4096 rows: TFLOP/s of the whole FP8
//     linear by the rule (quantiser, GEMM, epilogue), of lt-epilogue whole and its GEMM alone,
//     lt-outer whole, bf16's linear, and the epilogue kernel alone (us, and its bytes, a bf16
//     read and write an output, over the copy rate);
//   - decode: the same projections at N = 1, 2, 4, 8, 16, 32, 64, 128, 256 rows: the rule's
//     choice, the GEMV, lt-outer, lt-epilogue and bf16's linear, each as us and as the weights'
//     bytes (FP8: fp8_packed_bytes; bf16: 2 a weight) / time / the device-to-device copy rate
//     measured in the same run (bytes read + written, as the other subs count it). The weights
//     rotate over copies spanning at least 512 MB, so that no read hits the L2 cache.
// A path the GPU's cuBLASLt has no algorithm for prints "n/a" (and its reason on stderr); the run
// goes on. CSV: $OUT/fp8.csv, one line per measurement (rate: TFLOP/s for peak and prefill lines,
// the fraction of the copy rate for decode and epilogue lines).
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

// Microseconds per call of f(r) with r rotating over `copies` weights; -1 (with the reason on
// stderr) where it throws: a path cuBLASLt cannot run.
template <typename F>
double us_rotating(Backend& be, size_t copies, F&& f) {
  size_t r = 0;
  try {
    return 1e6 * bench::auto_seconds_per_call(be, [&] {
             f(r);
             r = (r + 1) % copies;
           });
  } catch (const Error& e) {
    std::fprintf(stderr, "fp8 bench: %s\n", e.what());
    return -1;
  }
}

// The FP8 linear through `path` (product_only: the GEMM alone, on the codes the scratch holds);
// -1 where the path cannot run these operands.
double fp8_us(Backend& be, const Weights& w, const Tensor& x, Tensor out, Fp8Path path,
              bool product_only = false) {
  auto& fp8 = cuda_host::cuda_fp8_gemm(be);
  if (!fp8.can_run(path, x, w.fp8[0], Tensor(), out)) return -1;
  if (product_only) fp8.linear(x, w.fp8[0], Tensor(), out, path);  // the scratch holds x's codes
  return us_rotating(be, w.fp8.size(),
                     [&](size_t r) { fp8.linear(x, w.fp8[r], Tensor(), out, path, product_only); });
}

double tflops(int64_t n, int64_t m, int64_t k, double us) {
  return us > 0 ? 2.0 * double(n) * double(m) * double(k) / (us * 1e-6) / 1e12 : -1;
}

std::string num(double v, const char* fmt = "%.1f") {
  if (v <= 0) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

void csv_line(std::FILE* csv, const char* part, const char* shape, int64_t n, int64_t k, int64_t m,
              const char* what, double us, double rate) {
  if (csv && us > 0)
    std::fprintf(csv, "%s,%s,%ld,%ld,%ld,%s,%.2f,%.4f\n", part, shape, long(n), long(k), long(m),
                 what, us, rate);
}

// The card's FP8 rate (lt-epilogue's GEMM alone on 8192^3, TFLOP/s; -1 where it cannot run).
double peak_rate(std::mt19937& rng, std::FILE* csv) {
  auto be = make_cuda_backend(0);
  const int64_t n = 8192;
  const Shape3 s{"square", n, n};
  Weights w = make_weights(*be, s, rng, 1);
  Tensor x = be->upload(bench::random_host({n, n}, rng));
  Tensor out = be->alloc({n, n}, DType::BF16);
  const double scalar = fp8_us(*be, w, x, out, Fp8Path::LtEpilogue, true);
  const double outer = fp8_us(*be, w, x, out, Fp8Path::LtOuter, true);
  auto& fp8 = cuda_host::cuda_fp8_gemm(*be);
  fp8.set_fast_accum_for_bench(true);  // what fast accumulation would gain (the contract: off)
  const double fast = fp8_us(*be, w, x, out, Fp8Path::LtEpilogue, true);
  fp8.set_fast_accum_for_bench(false);
  const double bf = us_rotating(*be, 1, [&](size_t) { be->linear(x, w.bf16[0], Tensor(), out); });
  const double f = tflops(n, n, n, scalar), fo = tflops(n, n, n, outer), b = tflops(n, n, n, bf),
               ff = tflops(n, n, n, fast);
  std::printf(
      "\nFP8 rate (cuBLASLt FP8 GEMM alone, scalar scales, %ld^3): %s TFLOP/s (fast accumulation "
      "on: %s); with outer-vector scales: %s; bf16: %s TFLOP/s\n",
      long(n), num(f).c_str(), num(ff).c_str(), num(fo).c_str(), num(b).c_str());
  csv_line(csv, "peak", "square", n, n, n, "fp8 gemm scalar", scalar, f);
  csv_line(csv, "peak", "square", n, n, n, "fp8 gemm scalar fast accum", fast, ff);
  csv_line(csv, "peak", "square", n, n, n, "fp8 gemm outer", outer, fo);
  csv_line(csv, "peak", "square", n, n, n, "bf16", bf, b);
  return f;
}

void prefill(double fp8_peak, double copy, std::mt19937& rng, std::FILE* csv) {
  std::printf(
      "\n## FP8 prefill GEMMs: out[N, M] = x[N, K] @ w[M, K]^T, bf16 in and out, TFLOP/s; FP8 "
      "rate %s TFLOP/s, copy %.3f TB/s (same run)\n| shape | N | K | M | rule | fp8 linear | / FP8 "
      "rate | lt-epilogue | its GEMM alone | lt-outer | bf16 | fp8 linear / bf16 | epilogue us "
      "(bytes / copy) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
      num(fp8_peak).c_str(), copy);
  std::vector<Shape3> shapes = {{"square", 4096, 4096}};
  shapes.insert(shapes.end(), std::begin(kLlama8B), std::end(kLlama8B));
  for (const Shape3& s : shapes) {
    auto be = make_cuda_backend(0);
    auto& fp8 = cuda_host::cuda_fp8_gemm(*be);
    Weights w = make_weights(*be, s, rng, 1);
    for (int64_t n : {int64_t(2048), int64_t(4096)}) {
      Tensor x = be->upload(bench::random_host({n, s.k}, rng));
      Tensor out = be->alloc({n, s.m}, DType::BF16);
      const Fp8Path rule = fp8.chosen(x, w.fp8[0], Tensor(), out);
      const double lin = fp8_us(*be, w, x, out, Fp8Path::Auto);
      const double epi = fp8_us(*be, w, x, out, Fp8Path::LtEpilogue);
      const double alone = fp8_us(*be, w, x, out, Fp8Path::LtEpilogue, true);
      const double outer = fp8_us(*be, w, x, out, Fp8Path::LtOuter);
      const double bf =
          us_rotating(*be, 1, [&](size_t) { be->linear(x, w.bf16[0], Tensor(), out); });
      // The epilogue alone, over the row scales the last quantiser run left in the scratch.
      const double ep_us =
          n <= cuda_host::Fp8Gemm::kMaxChunkRows
              ? us_rotating(*be, 1, [&](size_t) { fp8.epilogue_only(w.fp8[0], Tensor(), out); })
              : -1;
      const double ep_frac = ep_us > 0 ? double(n) * s.m * 4 / (ep_us * 1e-6) / 1e12 / copy : -1;
      const double tl = tflops(n, s.m, s.k, lin), te = tflops(n, s.m, s.k, epi),
                   ta = tflops(n, s.m, s.k, alone), to = tflops(n, s.m, s.k, outer),
                   tb = tflops(n, s.m, s.k, bf);
      std::printf("| %s | %ld | %ld | %ld | %s | %s | %s | %s | %s | %s | %s | %s | %s (%s) |\n",
                  s.name, long(n), long(s.k), long(s.m), cuda_host::fp8_path_name(rule),
                  num(tl).c_str(), num(fp8_peak > 0 ? tl / fp8_peak : -1, "%.2f").c_str(),
                  num(te).c_str(), num(ta).c_str(), num(to).c_str(), num(tb).c_str(),
                  num(tb > 0 ? tl / tb : -1, "%.2fx").c_str(), num(ep_us).c_str(),
                  num(ep_frac, "%.2f").c_str());
      std::fflush(stdout);
      for (auto [what, us, t] :
           {std::tuple{"fp8 linear", lin, tl}, std::tuple{"fp8 lt-epilogue", epi, te},
            std::tuple{"fp8 gemm alone", alone, ta}, std::tuple{"fp8 lt-outer", outer, to},
            std::tuple{"bf16", bf, tb}})
        csv_line(csv, "prefill", s.name, n, s.k, s.m, what, us, t);
      csv_line(csv, "epilogue", s.name, n, s.k, s.m, "fp8 epilogue", ep_us, ep_frac);
    }
  }
}

std::string cell(double us, double bytes, double copy) {
  if (us <= 0) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.1f (%.2f)", us, bytes / (us * 1e-6) / 1e12 / copy);
  return buf;
}

void decode(double copy, std::mt19937& rng, std::FILE* csv) {
  std::printf(
      "\n## FP8 decode GEMMs; copy %.3f TB/s (read + written); each cell: us (weight bytes / time "
      "/ copy); FP8 bytes = codes + scales\n| shape | rows | rule | fp8 (rule) | gemv | "
      "lt-outer | lt-epilogue | bf16 linear | fp8 (rule) / bf16 time |\n|---|---|---|---|---|---|"
      "---|---|---|\n",
      copy);
  for (const Shape3& s : kLlama8B) {
    auto be = make_cuda_backend(0);
    auto& fp8 = cuda_host::cuda_fp8_gemm(*be);
    const int copies = std::clamp(int(kRotateBytes / (double(s.m) * s.k) + 0.999), 1, 64);
    Weights w = make_weights(*be, s, rng, copies);
    for (int64_t n : {1, 2, 4, 8, 16, 32, 64, 128, 256}) {
      Tensor x = be->upload(bench::random_host({n, s.k}, rng));
      Tensor out = be->alloc({n, s.m}, DType::BF16);
      const Fp8Path rule = fp8.chosen(x, w.fp8[0], Tensor(), out);
      const double auto_us = fp8_us(*be, w, x, out, Fp8Path::Auto);
      const double gemv_us = n <= 32 ? fp8_us(*be, w, x, out, Fp8Path::Gemv) : -1;
      const double outer_us = fp8_us(*be, w, x, out, Fp8Path::LtOuter);
      const double epi_us = fp8_us(*be, w, x, out, Fp8Path::LtEpilogue);
      const double bf_us = us_rotating(*be, w.bf16.size(),
                                       [&](size_t r) { be->linear(x, w.bf16[r], Tensor(), out); });
      std::printf("| %s | %ld | %s | %s | %s | %s | %s | %s | %s |\n", s.name, long(n),
                  cuda_host::fp8_path_name(rule), cell(auto_us, w.fp8_bytes, copy).c_str(),
                  cell(gemv_us, w.fp8_bytes, copy).c_str(),
                  cell(outer_us, w.fp8_bytes, copy).c_str(),
                  cell(epi_us, w.fp8_bytes, copy).c_str(), cell(bf_us, w.bf16_bytes, copy).c_str(),
                  num(auto_us > 0 && bf_us > 0 ? auto_us / bf_us : -1, "%.2f").c_str());
      std::fflush(stdout);
      for (auto [what, us, bytes] : {std::tuple{"fp8 rule", auto_us, w.fp8_bytes},
                                     std::tuple{"fp8 gemv", gemv_us, w.fp8_bytes},
                                     std::tuple{"fp8 lt-outer", outer_us, w.fp8_bytes},
                                     std::tuple{"fp8 lt-epilogue", epi_us, w.fp8_bytes},
                                     std::tuple{"bf16", bf_us, w.bf16_bytes}})
        csv_line(csv, "decode", s.name, n, s.k, s.m, what, us,
                 us > 0 ? bytes / (us * 1e-6) / 1e12 / copy : -1);
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
  // Each part catches what it cannot run (n/a); an error outside a measurement (an allocation)
  // ends only that part.
  const auto guarded = [](const char* part, auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      std::printf("\nfp8 bench: %s stopped: %s\n", part, e.what());
    }
  };
  double peak = -1;
  guarded("FP8 rate", [&] { peak = peak_rate(rng, csv); });
  guarded("prefill", [&] { prefill(peak, copy, rng, csv); });
  guarded("decode", [&] { decode(copy, rng, csv); });
  if (csv) std::fclose(csv);
}

}  // namespace nc

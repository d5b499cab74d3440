// cpu_matmul over every stored weight format, every ISA path this CPU has and every activation
// mode: against float64 references (over the dequantized blocks and the activations it sees:
// tight; int8 mode over the original float x: within the activation quantization bound), the
// paths against each other, batch and thread invariance bit for bit, cpu_weight_row against
// dequantize(), and errors. Int16 activations: portable == AVX2 == AVX-512 bit for bit. A path this
// CPU lacks (AVX-512 on the dev machine) is skipped by name (CpuQuant.EveryPathIsRunHere); run the
// suite on a CPU with it to cover it:
//   nc_tests --gtest_filter='CpuQuant*:CpuFloatAct*'

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <utility>

#include "backend/cpu/cpu_isa.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu_quant_util.h"

namespace nc {
namespace test_cpu_quant {

using test::kWeightDTypes;

std::vector<CpuIsa> supported_isas() {
  std::vector<CpuIsa> out;
  for (CpuIsa isa : kAllCpuIsas)
    if (cpu_isa_supported(isa)) out.push_back(isa);
  return out;
}

struct Problem {
  DType t;
  int64_t M, K, N;
  std::vector<uint8_t> w;
  std::vector<float> x;
  CpuWeightView view() const { return {t, M, K, w.data()}; }
};

Problem make_problem(DType t, int64_t M, int64_t K, int64_t N, unsigned seed) {
  std::mt19937 rng(seed);
  Problem p{t, M, K, N, test::random_weights(t, M, K, rng), test::random_x(N * K, rng)};
  return p;
}

std::vector<float> run(const Problem& p, ThreadPool& pool, CpuIsa isa, CpuActivations act) {
  std::vector<float> out(size_t(p.N * p.M), -1.0f);
  cpu_matmul(p.x.data(), p.N, p.view(), out.data(), pool, isa, act);
  return out;
}

std::string path_name(DType t, CpuIsa isa, CpuActivations act) {
  return std::string(dtype_name(t)) + " " + cpu_isa_name(isa) + " " + cpu_activations_name(act);
}

// The largest activation rounding error of a block: half its quantization step, with a margin for
// the float rounding of x * (1 / d). Int16 quantizes every format per 32 values to +-32767.
double act_step_bound(DType t, CpuActivations act, const float* x, int64_t cols, const float* w) {
  if (!dtype_is_block(t) || act == CpuActivations::F32) return 0.0;
  const bool i16 = act == CpuActivations::Int16;
  const int64_t bs = dtype_block_elems(t) == 32 || i16 ? 32 : 256;
  const double levels = i16 ? 32767.0 : 127.0;
  double bound = 0.0;
  for (int64_t b = 0; b < cols; b += bs) {
    double amax = 0.0, wsum = 0.0;
    for (int64_t i = b; i < b + bs; ++i) {
      amax = std::max(amax, double(std::fabs(x[i])));
      wsum += std::fabs(double(w[i]));
    }
    bound += (amax / levels / 2.0) * 1.001 * wsum;
  }
  return bound;
}

TEST(CpuQuant, MatchesFloat64ReferencesOnEveryPath) {
  ThreadPool pool(2);
  for (DType t : kWeightDTypes) {
    for (int64_t K : {768, 576}) {
      if (K % dtype_block_elems(t) != 0) continue;
      const Problem p = make_problem(t, 7, K, 3, 11 + unsigned(t));
      const std::vector<float> wf = test::dequantized(t, p.w, p.M * K);
      for (CpuIsa isa : supported_isas())
        for (CpuActivations act : kAllCpuActivations) {
          const std::vector<float> out = run(p, pool, isa, act);
          for (int64_t n = 0; n < p.N; ++n) {
            const float* x = p.x.data() + n * K;
            const std::vector<float> xs = test::activation_as_seen(t, act, x, K);
            for (int64_t m = 0; m < p.M; ++m) {
              const float* w = wf.data() + m * K;
              double seen = 0, exact = 0, mag = 0;
              for (int64_t k = 0; k < K; ++k) {
                seen += double(w[k]) * xs[size_t(k)];
                exact += double(w[k]) * x[k];
                mag += std::fabs(double(w[k]) * xs[size_t(k)]);
              }
              const double got = out[size_t(n * p.M + m)];
              SCOPED_TRACE(::testing::Message()
                           << path_name(t, isa, act) << " K=" << K << " n=" << n << " m=" << m);
              // Int16's min terms use the exact sums of x, not of the quantized values: its
              // check is the (258x tighter) bound below.
              if (act != CpuActivations::Int16) {
                EXPECT_NEAR(got, seen, 1e-5 * mag + 1e-30);
              }
              EXPECT_NEAR(got, exact, 1e-5 * mag + act_step_bound(t, act, x, K, w));
            }
          }
        }
    }
  }
}

TEST(CpuQuant, EveryPathAgreesWithPortable) {
  ThreadPool pool(2);
  for (DType t : kWeightDTypes)
    for (CpuActivations act : kAllCpuActivations) {
      const Problem p = make_problem(t, 33, 1024, 5, 101 + unsigned(t));
      const std::vector<float> ref = run(p, pool, CpuIsa::Portable, act);
      const std::vector<float> wf = test::dequantized(t, p.w, p.M * p.K);
      for (CpuIsa isa : supported_isas()) {
        const std::vector<float> out = run(p, pool, isa, act);
        if (act == CpuActivations::Int16 && dtype_is_block(t)) {  // one order on every path
          EXPECT_EQ(0, std::memcmp(out.data(), ref.data(), out.size() * 4))
              << path_name(t, isa, act);
          continue;
        }
        for (int64_t n = 0; n < p.N; ++n)
          for (int64_t m = 0; m < p.M; ++m) {
            double mag = 0;
            for (int64_t k = 0; k < p.K; ++k)
              mag += std::fabs(double(wf[size_t(m * p.K + k)]) * p.x[size_t(n * p.K + k)]);
            EXPECT_NEAR(out[size_t(n * p.M + m)], ref[size_t(n * p.M + m)], 2e-5 * mag)
                << path_name(t, isa, act) << " n=" << n << " m=" << m;
          }
      }
    }
}

// A row's result is the same bits whether it runs alone on one thread or among N rows on two:
// at N = 1 the float-activation path multiplies four weight rows at a time decoded in registers
// (67 rows leave a remainder), at N > 1 strips of decoded rows (K = 3072 makes strips of 8 rows,
// several per thread) against groups of x rows (5 and 37 leave remainders).
TEST(CpuQuant, BatchAndThreadInvariant) {
  ThreadPool one(1), two(2);
  for (DType t : kWeightDTypes)
    for (auto [K, N] : {std::pair<int64_t, int64_t>{512, 37}, {3072, 5}}) {
      const Problem p = make_problem(t, 67, K, N, 201 + unsigned(t));
      for (CpuIsa isa : supported_isas())
        for (CpuActivations act : kAllCpuActivations) {
          const std::vector<float> all = run(p, two, isa, act);
          for (int64_t n = 0; n < p.N; ++n) {
            std::vector<float> single(static_cast<size_t>(p.M));
            cpu_matmul(p.x.data() + n * p.K, 1, p.view(), single.data(), one, isa, act);
            EXPECT_EQ(0, std::memcmp(single.data(), all.data() + n * p.M, single.size() * 4))
                << path_name(t, isa, act) << " K=" << K << " row " << n;
          }
        }
    }
}

// Each path this CPU has is run by the tests above; one it lacks is named here.
TEST(CpuQuant, EveryPathIsRunHere) {
  std::string missing;
  for (CpuIsa isa : kAllCpuIsas)
    if (!cpu_isa_supported(isa)) missing += std::string(" ") + cpu_isa_name(isa);
  if (!missing.empty())
    GTEST_SKIP() << "not tested on this CPU (the CPU, its OS or this build lacks it):" << missing;
  EXPECT_EQ(cpu_isa_best(), CpuIsa::Avx512);
}

TEST(CpuQuant, WeightRowIsDequantize) {
  std::mt19937 rng(5);
  for (DType t : kWeightDTypes) {
    const int64_t M = 4, K = 512;
    const std::vector<uint8_t> w = test::random_weights(t, M, K, rng);
    const std::vector<float> all = test::dequantized(t, w, M * K);
    std::vector<float> row(static_cast<size_t>(K));
    for (int64_t r = 0; r < M; ++r) {
      cpu_weight_row({t, M, K, w.data()}, r, row.data());
      EXPECT_EQ(0, std::memcmp(row.data(), all.data() + r * K, size_t(K) * 4)) << dtype_name(t);
    }
  }
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& words) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const auto& w : words)
      EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << e.what();
  }
}

TEST(CpuQuant, BadInputNamesTheValue) {
  ThreadPool pool(1);
  std::vector<uint8_t> w(4096);
  std::vector<float> x(256), out(16);
  expect_error(
      [&] {
        cpu_matmul(x.data(), 1, {DType::Q4_0, 2, 100, w.data()}, out.data(), pool);
      },
      {"100", "q4_0", "32"});
  expect_error(
      [&] {
        cpu_matmul(x.data(), 1, {DType::Q6_K, 2, 160, w.data()}, out.data(), pool);
      },
      {"160", "q6_k", "256"});
  expect_error(
      [&] {
        cpu_matmul(x.data(), 1, {DType::I32, 2, 64, w.data()}, out.data(), pool);
      },
      {"i32"});
  expect_error(
      [&] {
        cpu_matmul(x.data(), 1, {DType(200), 2, 64, w.data()}, out.data(), pool);
      },
      {"200"});
  expect_error([&] { cpu_weight_row({DType::Q8_0, 2, 64, w.data()}, 2, out.data()); }, {"row 2"});
  expect_error([&] { cpu_isa_parse("sse9"); }, {"NC_CPU_ISA=sse9"});
  EXPECT_EQ(cpu_isa_parse("portable"), CpuIsa::Portable);
  EXPECT_EQ(cpu_isa_parse(""), cpu_isa_best());
  for (CpuIsa isa : kAllCpuIsas) {
    if (cpu_isa_supported(isa)) {
      EXPECT_EQ(cpu_isa_parse(cpu_isa_name(isa)), isa);
    } else {
      const std::string v = cpu_isa_name(isa);
      expect_error([&] { cpu_isa_parse(v.c_str()); }, {"NC_CPU_ISA=" + v, "does not support"});
      expect_error(
          [&] {
            cpu_matmul(x.data(), 1, {DType::Q8_0, 2, 64, w.data()}, out.data(), pool, isa,
                       CpuActivations::F32);
          },
          {v});
    }
  }
  expect_error([&] { cpu_activations_parse("int4"); }, {"NC_CPU_ACTIVATIONS=int4"});
  EXPECT_EQ(cpu_activations_parse(""), CpuActivations::Int8);
  EXPECT_EQ(cpu_activations_parse("int8"), CpuActivations::Int8);
  EXPECT_EQ(cpu_activations_parse("f32"), CpuActivations::F32);
  EXPECT_EQ(cpu_activations_parse("int16"), CpuActivations::Int16);
  expect_error([&] { cpu_activations_parse("INT16"); }, {"NC_CPU_ACTIVATIONS=INT16", "int16"});
  const CpuActivations saved = cpu_activations_active();
  for (CpuActivations a : kAllCpuActivations) {
    set_cpu_activations(a);
    EXPECT_EQ(cpu_activations_active(), a);
  }
  set_cpu_activations(saved);
}

}  // namespace test_cpu_quant
}  // namespace nc

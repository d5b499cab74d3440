// Backend::silu_mul_linear's default (backend.h): silu_and_mul into the scratch (or a tensor of
// its own), then linear. On the CPU backend it must equal a float64 reference written here from
// the definitions (silu(g) = g / (1 + exp(-g)), then the dot products), within float32 rounding,
// and equal the two ops called by hand bit for bit; a bad gate_up shape or scratch is an
// nc::Error naming it. (The CUDA override is tested in tests/gpu/test_cuda_fused.cc.)
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/backend.h"
#include "core/error.h"

namespace nc {
namespace {

class SiluMulLinear : public ::testing::Test {
 protected:
  std::vector<float> random(int64_t n, float scale) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = normal(rng);
    return v;
  }
  Tensor upload(const Shape& shape, const std::vector<float>& v) {
    return cpu->upload(HostTensor{shape, v});
  }

  std::mt19937 rng{1616};
  std::unique_ptr<Backend> cpu = make_cpu_backend();
};

// out[t][m] = sum_i silu(g[t][i]) * u[t][i] * w[m][i] (+ bias[m]), in double.
std::vector<double> reference(const std::vector<float>& gu, const std::vector<float>& w,
                              const std::vector<float>& bias, int64_t T, int64_t I, int64_t M) {
  std::vector<double> out(size_t(T * M));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t m = 0; m < M; ++m) {
      double s = bias.empty() ? 0.0 : bias[size_t(m)];
      for (int64_t i = 0; i < I; ++i) {
        const double g = gu[size_t(t * 2 * I + i)], u = gu[size_t(t * 2 * I + I + i)];
        s += g / (1.0 + std::exp(-g)) * u * w[size_t(m * I + i)];
      }
      out[size_t(t * M + m)] = s;
    }
  return out;
}

TEST_F(SiluMulLinear, DefaultMatchesTheDefinitionAndTheTwoOps) {
  const int64_t M = 24;
  for (int64_t T : {1, 3})
    for (int64_t I : {8, 40})
      for (bool with_bias : {false, true})
        for (bool with_scratch : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "T " << T << " I " << I << " bias " << with_bias
                                            << " scratch " << with_scratch);
          const std::vector<float> gu = random(T * 2 * I, 1.5f), w = random(M * I, 0.2f);
          const std::vector<float> b = with_bias ? random(M, 0.5f) : std::vector<float>{};
          Tensor g = upload({T, 2 * I}, gu), wt = upload({M, I}, w);
          Tensor bias = with_bias ? upload({M}, b) : Tensor();
          Tensor out = cpu->alloc({T, M}, DType::F32);
          Tensor act = with_scratch ? cpu->alloc({T, I}, DType::F32) : Tensor();
          cpu->silu_mul_linear(g, wt, bias, out, act);
          const std::vector<float> got = cpu->to_host_f32(out);
          const std::vector<double> ref = reference(gu, w, b, T, I, M);
          for (size_t k = 0; k < ref.size(); ++k)
            EXPECT_NEAR(got[k], ref[k], 1e-5 * (1.0 + std::abs(ref[k]))) << "element " << k;
          // The same as the two ops by hand.
          Tensor act2 = cpu->alloc({T, I}, DType::F32), out2 = cpu->alloc({T, M}, DType::F32);
          cpu->silu_and_mul(g, act2);
          cpu->linear(act2, wt, bias, out2);
          EXPECT_EQ(got, cpu->to_host_f32(out2));
          if (with_scratch) {
            EXPECT_EQ(cpu->to_host_f32(act), cpu->to_host_f32(act2));
          }
        }
}

TEST_F(SiluMulLinear, BadShapesAreErrorsNamingThem) {
  Tensor w = cpu->alloc({4, 8}, DType::F32), out = cpu->alloc({2, 4}, DType::F32);
  try {
    cpu->silu_mul_linear(cpu->alloc({2, 15}, DType::F32), w, Tensor(), out);
    FAIL() << "odd gate_up width accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 15]"), std::string::npos) << e.what();
  }
  try {
    cpu->silu_mul_linear(cpu->alloc({2, 16}, DType::F32), w, Tensor(), out,
                         cpu->alloc({2, 7}, DType::F32));
    FAIL() << "scratch of the wrong shape accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("silu_mul_linear activation"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace nc

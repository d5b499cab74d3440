// The elementwise ops of the attention variants' models on the CUDA backend against their
// formulas evaluated here in double precision: gelu_tanh_and_mul (bf16), scale (bf16 and f32)
// and soft_cap (f32 logits).
#include <cmath>

#include "gpu_test_util.h"

namespace nc::testing {
namespace {

using CudaVariantOps = GpuVsCpu;

double gelu_tanh(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

TEST_F(CudaVariantOps, GeluTanhAndMul) {
  // Row widths with every vector width of the kernel (8, 4, 2, 1 elements).
  for (int64_t I : {64, 100, 6, 7, 2816}) {
    const int64_t T = 13;
    const std::vector<float> in = random_vec(rng, size_t(T * 2 * I), 2.0f);
    Tensor x = gpu->upload(HostTensor{{T, 2 * I}, in});
    Tensor out = gpu->upload(HostTensor{{T, I}, std::vector<float>(size_t(T * I), std::nanf(""))});
    gpu->gelu_tanh_and_mul(x, out);
    std::vector<float> ref(size_t(T * I));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < I; ++i)
        ref[t * I + i] = float(gelu_tanh(in[t * 2 * I + i]) * in[t * 2 * I + I + i]);
    EXPECT_LE(rel_error(gpu->to_host_f32(out), ref), kBf16Tol) << "I=" << I;
  }
}

TEST_F(CudaVariantOps, ScaleBf16AndF32) {
  const int64_t n = 100003;  // not a multiple of the block
  const std::vector<float> in = random_vec(rng, size_t(n), 3.0f);
  const float s = std::sqrt(2304.0f);  // Gemma 2's embedding scale at hidden 2304
  Tensor xb = gpu->upload(HostTensor{{n}, in});
  gpu->scale(xb, s);
  Tensor xf = gpu->alloc({n}, DType::F32);
  gpu->copy_from_host(xf, in.data());
  gpu->scale(xf, s);
  std::vector<float> ref(in);
  for (float& v : ref) v *= s;
  EXPECT_LE(rel_error(gpu->to_host_f32(xb), ref), kBf16Tol);
  const std::vector<float> f = gpu->to_host_f32(xf);
  for (int64_t i = 0; i < n; i += 997) EXPECT_FLOAT_EQ(f[i], ref[i]) << i;
}

TEST_F(CudaVariantOps, SoftCapF32) {
  const int64_t rows = 3, vocab = 50001;
  const std::vector<float> in = random_vec(rng, size_t(rows * vocab), 40.0f);
  Tensor x = gpu->alloc({rows, vocab}, DType::F32);
  gpu->copy_from_host(x, in.data());
  const float cap = 30.0f;  // Gemma 2's final-logit cap
  gpu->soft_cap(x, cap);
  const std::vector<float> out = gpu->to_host_f32(x);
  for (size_t i = 0; i < in.size(); ++i) {
    const double ref = cap * std::tanh(double(in[i]) / cap);
    ASSERT_NEAR(out[i], ref, 1e-4 * cap) << i;
    ASSERT_LT(std::fabs(out[i]), cap + 1e-3) << i;
  }
  EXPECT_THROW(gpu->soft_cap(x, 0.0f), Error);
  Tensor b = gpu->upload(HostTensor{{4}, {1, 2, 3, 4}});
  EXPECT_THROW(gpu->soft_cap(b, cap), Error);  // bf16: logits are float32
}

}  // namespace
}  // namespace nc::testing

// The CPU backend's MoE ops (backend/cpu/cpu_moe.h): moe_experts against a double-precision
// per-token reference, batch invariance (a token's output bit for bit the same alone, in a
// batch, in another order), quantized stacked experts (Q8_0, Q4_K) and the shape errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/backend.h"
#include "core/error.h"
#include "cpu_quant_util.h"

namespace nc {
namespace {

constexpr int64_t kE = 6, kH = 256, kI = 256, kK = 2;

struct Experts {
  DType dtype;
  std::vector<uint8_t> gate_up, down;  // [E, 2I, H], [E, H, I] as stored
  Tensor gu_t, down_t;

  Experts(DType t, std::mt19937& rng) : dtype(t) {
    gate_up = test::random_weights(t, kE * 2 * kI, kH, rng);
    down = test::random_weights(t, kE * kH, kI, rng);
    gu_t = Tensor(gate_up.data(), {kE, 2 * kI, kH}, t);
    down_t = Tensor(down.data(), {kE, kH, kI}, t);
  }
};

struct Routing {
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

Routing random_routing(int64_t T, std::mt19937& rng) {
  Routing r;
  std::uniform_int_distribution<int> e(0, kE - 1);
  std::uniform_real_distribution<float> w(0.1f, 1.0f);
  for (int64_t t = 0; t < T; ++t) {
    const int a = e(rng);
    int b = e(rng);
    if (b == a) b = (a + 1) % kE;
    r.ids.insert(r.ids.end(), {a, b});
    r.weights.insert(r.weights.end(), {w(rng), w(rng)});
  }
  return r;
}

std::vector<float> run(Backend& b, const Experts& ex, const std::vector<float>& x, Routing r) {
  const int64_t T = int64_t(x.size()) / kH;
  std::vector<float> out(size_t(T * kH));
  std::vector<float> xc = x;
  b.moe_experts(Tensor(xc.data(), {T, kH}, DType::F32), Tensor(r.ids.data(), {T, kK}, DType::I32),
                Tensor(r.weights.data(), {T, kK}, DType::F32), ex.gu_t, ex.down_t,
                Tensor(out.data(), {T, kH}, DType::F32));
  return out;
}

TEST(CpuMoe, ExpertsMatchDoubleReference) {
  std::mt19937 rng(11);
  Experts ex(DType::F32, rng);
  const int64_t T = 9;
  const std::vector<float> x = test::random_x(T * kH, rng);
  const Routing r = random_routing(T, rng);
  auto b = make_cpu_backend();
  const std::vector<float> got = run(*b, ex, x, r);
  const float* gu = reinterpret_cast<const float*>(ex.gate_up.data());
  const float* dn = reinterpret_cast<const float*>(ex.down.data());
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> want(kH, 0.0);
    for (int64_t j = 0; j < kK; ++j) {
      const int64_t e = r.ids[t * kK + j];
      std::vector<double> act(kI);
      for (int64_t i = 0; i < kI; ++i) {
        double g = 0, u = 0;
        for (int64_t h = 0; h < kH; ++h) {
          g += double(gu[(e * 2 * kI + i) * kH + h]) * x[t * kH + h];
          u += double(gu[(e * 2 * kI + kI + i) * kH + h]) * x[t * kH + h];
        }
        act[i] = g / (1 + std::exp(-g)) * u;
      }
      for (int64_t h = 0; h < kH; ++h) {
        double y = 0;
        for (int64_t i = 0; i < kI; ++i) y += double(dn[(e * kH + h) * kI + i]) * act[i];
        want[h] += r.weights[t * kK + j] * y;
      }
    }
    for (int64_t h = 0; h < kH; ++h)
      ASSERT_NEAR(got[t * kH + h], want[h], 1e-4 * (1 + std::abs(want[h])))
          << "token " << t << " column " << h;
  }
}

// Token 3's output alone, inside a batch of 12, and with the batch reversed: the same bits, for
// float32 and block-format experts.
TEST(CpuMoe, BatchInvariant) {
  for (DType dt : {DType::F32, DType::Q8_0, DType::Q4_K}) {
    SCOPED_TRACE(dtype_name(dt));
    std::mt19937 rng(5);
    Experts ex(dt, rng);
    const int64_t T = 12, probe = 3;
    const std::vector<float> x = test::random_x(T * kH, rng);
    const Routing r = random_routing(T, rng);
    auto b = make_cpu_backend();
    const std::vector<float> batch = run(*b, ex, x, r);
    const std::vector<float> alone =
        run(*b, ex, std::vector<float>(x.begin() + probe * kH, x.begin() + (probe + 1) * kH),
            Routing{{r.ids[probe * kK], r.ids[probe * kK + 1]},
                    {r.weights[probe * kK], r.weights[probe * kK + 1]}});
    std::vector<float> xr;
    Routing rr;
    for (int64_t t = T - 1; t >= 0; --t) {
      xr.insert(xr.end(), x.begin() + t * kH, x.begin() + (t + 1) * kH);
      rr.ids.insert(rr.ids.end(), {r.ids[t * kK], r.ids[t * kK + 1]});
      rr.weights.insert(rr.weights.end(), {r.weights[t * kK], r.weights[t * kK + 1]});
    }
    const std::vector<float> reversed = run(*b, ex, xr, rr);
    for (int64_t h = 0; h < kH; ++h) {
      ASSERT_EQ(batch[probe * kH + h], alone[h]) << "column " << h;
      ASSERT_EQ(batch[probe * kH + h], reversed[(T - 1 - probe) * kH + h]) << "column " << h;
    }
  }
}

// moe_route runs the reference routing and checks its shapes; moe_experts names an expert id
// outside the stack.
TEST(CpuMoe, Errors) {
  auto b = make_cpu_backend();
  std::mt19937 rng(1);
  Experts ex(DType::F32, rng);
  std::vector<float> x(kH, 0.5f), out(kH);
  std::vector<int32_t> ids = {0, int32_t(kE)};
  std::vector<float> w = {0.5f, 0.5f};
  try {
    b->moe_experts(Tensor(x.data(), {1, kH}, DType::F32), Tensor(ids.data(), {1, kK}, DType::I32),
                   Tensor(w.data(), {1, kK}, DType::F32), ex.gu_t, ex.down_t,
                   Tensor(out.data(), {1, kH}, DType::F32));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expert id 6"), std::string::npos) << e.what();
  }
  std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f};
  const MoeRouting r{.num_experts = 4, .top_k = 2};
  b->moe_route(Tensor(logits.data(), {1, 4}, DType::F32), Tensor(), r,
               Tensor(ids.data(), {1, 2}, DType::I32), Tensor(w.data(), {1, 2}, DType::F32));
  EXPECT_EQ(ids, (std::vector<int32_t>{3, 2}));
  EXPECT_THROW(
      b->moe_route(Tensor(logits.data(), {2, 2}, DType::F32), Tensor(), r,
                   Tensor(ids.data(), {1, 2}, DType::I32), Tensor(w.data(), {1, 2}, DType::F32)),
      Error);
}

}  // namespace
}  // namespace nc

// Backend::qkv_split_norm_rope on the CPU against the ops it replaces: the fused projection split
// by hand, then rmsnorm() over the q and k heads and rope() (the ops the Hugging Face golden tests
// check). The CPU op does the same float operations in the same order, so it must match exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/backend.h"
#include "backend/cpu/cpu_ops.h"
#include "core/error.h"

namespace nc {
namespace {

struct Dims {
  int64_t T, Hq, Hk, D;
};

class QkvSplitNormRope : public ::testing::Test {
 protected:
  Tensor upload(const Shape& shape, const std::vector<float>& v) {
    return cpu->upload(HostTensor{shape, v});
  }
  std::vector<float> random(int64_t n, float scale = 1.0f, float offset = 0.0f) {
    std::normal_distribution<float> normal(offset, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = normal(rng);
    return v;
  }
  Tensor positions(const std::vector<int32_t>& pos) {
    Tensor t = cpu->alloc({int64_t(pos.size())}, DType::I32);
    cpu->copy_from_host(t, pos.data());
    return t;
  }
  // cos/sin [max_pos, D] as Hugging Face builds it for rope_theta 10000.
  Tensor table(int64_t max_pos, int64_t D) {
    std::vector<float> t(size_t(max_pos * D));
    for (int64_t p = 0; p < max_pos; ++p)
      for (int64_t i = 0; i < D / 2; ++i) {
        const float inv = 1.0f / std::pow(10000.0f, float(2 * i) / float(D));
        const float a = float(p) * inv;
        t[size_t(p * D + i)] = std::cos(a);
        t[size_t(p * D + D / 2 + i)] = std::sin(a);
      }
    return upload({max_pos, D}, t);
  }

  std::mt19937 rng{4242};
  std::unique_ptr<Backend> cpu = make_cpu_backend();
};

TEST_F(QkvSplitNormRope, MatchesSplitThenRmsNormThenRope) {
  const int64_t max_pos = 512;
  for (Dims d : {Dims{1, 16, 8, 128}, Dims{7, 16, 8, 64}, Dims{5, 32, 8, 128}, Dims{3, 4, 1, 16}})
    for (bool q_norm : {false, true})
      for (bool k_norm : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "T=" << d.T << " Hq=" << d.Hq << " Hk=" << d.Hk
                                          << " D=" << d.D << " norms " << q_norm << k_norm);
        const int64_t QW = d.Hq * d.D, KW = d.Hk * d.D, W = QW + 2 * KW;
        const std::vector<float> qkv_h = random(d.T * W, 2.0f);
        std::vector<int32_t> pos(size_t(d.T));
        std::uniform_int_distribution<int32_t> pd(0, int32_t(max_pos) - 1);
        for (auto& p : pos) p = pd(rng);
        const Tensor qkv = upload({d.T, W}, qkv_h), cs = table(max_pos, d.D), pt = positions(pos);
        const Tensor qn = q_norm ? upload({d.D}, random(d.D, 0.2f, 1.0f)) : Tensor();
        const Tensor kn = k_norm ? upload({d.D}, random(d.D, 0.2f, 1.0f)) : Tensor();
        const float eps = 1e-6f;

        // Reference: split by hand, then the existing ops.
        std::vector<float> rq, rk, rv;
        for (int64_t t = 0; t < d.T; ++t) {
          const float* row = qkv_h.data() + t * W;
          rq.insert(rq.end(), row, row + QW);
          rk.insert(rk.end(), row + QW, row + QW + KW);
          rv.insert(rv.end(), row + QW + KW, row + W);
        }
        Tensor eq = upload({d.T, QW}, rq), ek = upload({d.T, KW}, rk);
        if (q_norm) cpu->rmsnorm(eq.view({d.T * d.Hq, d.D}), qn, eps, eq.view({d.T * d.Hq, d.D}));
        if (k_norm) cpu->rmsnorm(ek.view({d.T * d.Hk, d.D}), kn, eps, ek.view({d.T * d.Hk, d.D}));
        cpu_rope(eq, ek, pt, cs, int(d.D));

        const std::vector<float> nan_q(size_t(d.T * QW), std::nanf("")),
            nan_kv(size_t(d.T * KW), std::nanf(""));
        Tensor q = upload({d.T, QW}, nan_q), k = upload({d.T, KW}, nan_kv),
               v = upload({d.T, KW}, nan_kv);
        cpu->qkv_split_norm_rope(qkv, qn, kn, eps, pt, cs, int(d.D), q, k, v);
        EXPECT_EQ(cpu->to_host_f32(q), cpu->to_host_f32(eq));
        EXPECT_EQ(cpu->to_host_f32(k), cpu->to_host_f32(ek));
        EXPECT_EQ(cpu->to_host_f32(v), rv);
      }
}

TEST_F(QkvSplitNormRope, PositionZeroIsAPlainSplit) {
  // cos 1, sin 0 at position 0: without norms the op only splits.
  const int64_t D = 8, W = 3 * D;
  std::vector<float> row = random(W);
  const Tensor qkv = upload({1, W}, row), cs = table(4, D), pt = positions({0});
  Tensor q = cpu->alloc({1, D}, DType::F32), k = cpu->alloc({1, D}, DType::F32),
         v = cpu->alloc({1, D}, DType::F32);
  cpu->qkv_split_norm_rope(qkv, Tensor(), Tensor(), 1e-6f, pt, cs, int(D), q, k, v);
  const std::vector<float> rq(row.begin(), row.begin() + D),
      rk(row.begin() + D, row.begin() + 2 * D), rv(row.begin() + 2 * D, row.end());
  EXPECT_EQ(cpu->to_host_f32(q), rq);
  EXPECT_EQ(cpu->to_host_f32(k), rk);
  EXPECT_EQ(cpu->to_host_f32(v), rv);
}

TEST_F(QkvSplitNormRope, TwoDimensionalHeadByHand) {
  // head_dim 2: the head (a, b) is scaled by w / rms and rotated by the angle p (frequency 1).
  const double a = 0.3, b = -1.7, wq0 = 1.5, wq1 = 0.5, p = 3;
  const Tensor qkv = upload({1, 6}, {float(a), float(b), float(b), float(a), 7.0f, 8.0f});
  const Tensor cs = table(8, 2), pt = positions({int32_t(p)}), qn = upload({2}, {1.5f, 0.5f});
  Tensor q = cpu->alloc({1, 2}, DType::F32), k = cpu->alloc({1, 2}, DType::F32),
         v = cpu->alloc({1, 2}, DType::F32);
  cpu->qkv_split_norm_rope(qkv, qn, Tensor(), 0.0f, pt, cs, 2, q, k, v);
  const double inv_rms = 1.0 / std::sqrt((a * a + b * b) / 2);
  const double x = wq0 * a * inv_rms, y = wq1 * b * inv_rms;
  const std::vector<float> gq = cpu->to_host_f32(q), gk = cpu->to_host_f32(k);
  EXPECT_NEAR(gq[0], x * std::cos(p) - y * std::sin(p), 1e-6);
  EXPECT_NEAR(gq[1], y * std::cos(p) + x * std::sin(p), 1e-6);
  EXPECT_NEAR(gk[0], b * std::cos(p) - a * std::sin(p), 1e-6);  // k: no norm
  EXPECT_NEAR(gk[1], a * std::cos(p) + b * std::sin(p), 1e-6);
  EXPECT_EQ(cpu->to_host_f32(v), (std::vector<float>{7.0f, 8.0f}));
}

TEST_F(QkvSplitNormRope, RejectsBadInput) {
  const int64_t D = 16;
  const Tensor cs = table(8, D), pt = positions({1, 2});
  Tensor q = cpu->alloc({2, 2 * D}, DType::F32), k = cpu->alloc({2, D}, DType::F32),
         v = cpu->alloc({2, D}, DType::F32);
  const Tensor good = upload({2, 4 * D}, random(8 * D));
  const Tensor narrow = upload({2, 3 * D}, random(6 * D));
  EXPECT_THROW(cpu->qkv_split_norm_rope(narrow, Tensor(), Tensor(), 1e-6f, pt, cs, int(D), q, k, v),
               Error);
  const Tensor bad_norm = upload({D / 2}, random(D / 2));
  EXPECT_THROW(cpu->qkv_split_norm_rope(good, bad_norm, Tensor(), 1e-6f, pt, cs, int(D), q, k, v),
               Error);
  EXPECT_THROW(cpu->qkv_split_norm_rope(good, Tensor(), Tensor(), 1e-6f, positions({1, 8}), cs,
                                        int(D), q, k, v),
               Error);  // position past the table
  EXPECT_THROW(cpu->qkv_split_norm_rope(good, Tensor(), Tensor(), 1e-6f, pt, table(8, 2 * D),
                                        int(D), q, k, v),
               Error);  // table of another head_dim
  EXPECT_NO_THROW(
      cpu->qkv_split_norm_rope(good, Tensor(), Tensor(), 1e-6f, pt, cs, int(D), q, k, v));
}

}  // namespace
}  // namespace nc

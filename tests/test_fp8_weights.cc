// FP8 linear weights (backend/fp8_weight.h, backend/cpu/cpu_fp8.h, model/fp8_load.h): per-row
// quantisation, the CPU's FP8 product against a double-precision reference written here from the
// contract, static activation scales, and the checkpoint layouts with their errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/backend.h"
#include "backend/fp8_weight.h"
#include "core/error.h"
#include "core/fp8.h"
#include "model/fp8_load.h"

namespace nc {
namespace {

HostTensor random_matrix(int64_t rows, int64_t cols, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  HostTensor t{{rows, cols}, std::vector<float>(size_t(rows * cols))};
  for (float& v : t.data) v = d(rng);
  return t;
}

// out[n, m] from the contract, in double: e4m3 values of x / s_a and of the codes, times scales.
std::vector<double> reference(const HostTensor& x, const Fp8Weight& w) {
  const int64_t N = x.shape[0], K = x.shape[1];
  std::vector<double> out(size_t(N * w.rows));
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x.data.data() + n * K;
    float s = w.input_scale;
    if (s == 0) {
      float amax = 0;
      for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(xr[k]));
      s = amax > 0 ? amax / 448.0f : 1.0f;
    }
    for (int64_t m = 0; m < w.rows; ++m) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k)
        acc += double(e4m3_to_f32(f32_to_e4m3(xr[k] / s))) *
               double(e4m3_to_f32(w.codes[size_t(m * K + k)]));
      out[size_t(n * w.rows + m)] = acc * double(s) * double(w.scales[size_t(m)]);
    }
  }
  return out;
}

std::vector<float> run_linear(Backend& be, const HostTensor& x, const Fp8Weight& w) {
  Tensor tw = be.upload_fp8_linear(w);
  Tensor tx = be.upload(x);
  Tensor out = be.alloc({x.shape[0], w.rows}, DType::F32);
  be.linear(tx, tw, Tensor(), out);
  return be.to_host_f32(out);
}

TEST(Fp8Weights, QuantizeIsPerRowAmaxOver448) {
  HostTensor w = random_matrix(5, 37, 1);
  for (int64_t k = 0; k < 37; ++k) w.data[size_t(2 * 37 + k)] = 0;  // an all-zero row
  w.data[3] = 1000.0f;                                              // row 0's outlier
  const Fp8Weight q = quantize_fp8_weight(w);
  ASSERT_EQ(q.scales.size(), 5u);
  EXPECT_FLOAT_EQ(q.scales[0], 1000.0f / 448.0f);
  EXPECT_EQ(q.codes[3], 0x7e);  // the row's largest value is code 448
  EXPECT_EQ(q.scales[2], 1.0f);
  for (int64_t k = 0; k < 37; ++k) EXPECT_EQ(q.codes[size_t(2 * 37 + k)], 0);
  // Every value is its row's e4m3 rounding: within half a step (1/16 relative) of the original.
  const HostTensor back = dequantize_fp8_weight(q);
  for (int64_t i = 0; i < 5 * 37; ++i) {
    const float v = w.data[size_t(i)], b = back.data[size_t(i)];
    EXPECT_LE(std::fabs(v - b), std::fabs(v) / 16 + q.scales[size_t(i / 37)] * 0.002f) << i;
  }
}

TEST(Fp8Weights, CpuLinearMatchesTheContract) {
  auto be = make_cpu_backend();
  for (int64_t K : {8, 61, 576}) {
    const Fp8Weight w = quantize_fp8_weight(random_matrix(45, K, 2 + uint32_t(K), 0.1f));
    HostTensor x = random_matrix(7, K, 3, 2.0f);
    for (int64_t k = 0; k < K; ++k) x.data[size_t(4 * K + k)] = 0;  // a zero row: scale 1
    const std::vector<float> got = run_linear(*be, x, w);
    const std::vector<double> ref = reference(x, w);
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_NEAR(got[i], ref[i], 1e-5 * (1 + std::fabs(ref[i]))) << "K " << K << " at " << i;
  }
}

TEST(Fp8Weights, CpuLinearIsBatchInvariant) {
  auto be = make_cpu_backend();
  const Fp8Weight w = quantize_fp8_weight(random_matrix(33, 200, 4, 0.1f));
  const HostTensor x = random_matrix(6, 200, 5);
  const std::vector<float> all = run_linear(*be, x, w);
  for (int64_t n = 0; n < 6; ++n) {
    HostTensor row{{1, 200}, {x.data.begin() + n * 200, x.data.begin() + (n + 1) * 200}};
    const std::vector<float> one = run_linear(*be, row, w);
    for (int64_t m = 0; m < 33; ++m) EXPECT_EQ(one[size_t(m)], all[size_t(n * 33 + m)]);
  }
}

TEST(Fp8Weights, StaticInputScaleSaturates) {
  auto be = make_cpu_backend();
  Fp8Weight w = quantize_fp8_weight(random_matrix(9, 16, 6, 0.1f));
  w.input_scale = 0.01f;  // x values past 4.48 saturate to 448 * 0.01
  const HostTensor x = random_matrix(3, 16, 7, 10.0f);
  const std::vector<float> got = run_linear(*be, x, w);
  const std::vector<double> ref = reference(x, w);
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], ref[i], 1e-5 * (1 + std::fabs(ref[i])));
  Fp8Weight dynamic = w;
  dynamic.input_scale = 0;
  EXPECT_NE(run_linear(*be, x, dynamic), got);  // the static scale is really used
}

TEST(Fp8Weights, BadWeightsAreRefused) {
  auto be = make_cpu_backend();
  Fp8Weight w = quantize_fp8_weight(random_matrix(4, 8, 8));
  Fp8Weight few = w;
  few.scales.pop_back();
  EXPECT_THROW(be->upload_fp8_linear(few), Error);
  Fp8Weight zero = w;
  zero.scales[1] = 0;
  try {
    be->upload_fp8_linear(zero);
    FAIL() << "a zero scale was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 1"), std::string::npos) << e.what();
  }
  // A weight of another width than the input.
  Tensor tw = be->upload_fp8_linear(w);
  Tensor x = be->alloc({2, 9}, DType::F32), out = be->alloc({2, 4}, DType::F32);
  EXPECT_THROW(be->linear(x, tw, Tensor(), out), Error);
}

// A stored FP8 weight [out, in] with a weight_scale of shape `scale_shape`.
WeightMap stored(const Shape& scale_shape, int64_t out = 6, int64_t in = 8) {
  const std::string name = "model.layers.0.self_attn.q_proj.weight";
  WeightMap w;
  HostTensor codes{{out, in}, {}, DType::F8E4M3};
  for (int64_t i = 0; i < out * in; ++i) codes.raw.push_back(uint8_t(0x30 + i % 16));
  w[name] = codes;
  int64_t n = 1;
  for (int64_t d : scale_shape) n *= d;
  HostTensor s{scale_shape, std::vector<float>(size_t(n))};
  for (int64_t i = 0; i < n; ++i) s.data[size_t(i)] = 0.5f + float(i);
  w["model.layers.0.self_attn.q_proj.weight_scale"] = s;
  return w;
}

TEST(Fp8Load, ScaleLayouts) {
  const std::string name = "model.layers.0.self_attn.q_proj.weight";
  const Fp8Weight scalar = fp8_weight_from(stored({}), name, {6, 8});
  EXPECT_EQ(scalar.scales, std::vector<float>(6, 0.5f));
  const Fp8Weight per_row = fp8_weight_from(stored({6, 1}), name, {6, 8});
  EXPECT_EQ(per_row.scales[5], 5.5f);
  EXPECT_EQ(fp8_weight_from(stored({6}), name, {6, 8}).scales, per_row.scales);
  EXPECT_EQ(per_row.codes[9], 0x39);
  EXPECT_EQ(per_row.input_scale, 0);
  WeightMap with_input = stored({1});
  with_input["model.layers.0.self_attn.q_proj.input_scale"] = HostTensor{{}, {0.25f}};
  EXPECT_EQ(fp8_weight_from(with_input, name, {6, 8}).input_scale, 0.25f);
}

void expect_error(const WeightMap& w, const Shape& shape, ErrorKind kind, const char* needle) {
  try {
    fp8_weight_from(w, "model.layers.0.self_attn.q_proj.weight", shape);
    FAIL() << "no error for " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Fp8Load, BadScalesAreNamed) {
  WeightMap missing = stored({});
  missing.erase("model.layers.0.self_attn.q_proj.weight_scale");
  expect_error(missing, {6, 8}, ErrorKind::InvalidArgument, "q_proj.weight_scale' is missing");
  expect_error(stored({5}), {6, 8}, ErrorKind::InvalidArgument, "shape [5]");
  expect_error(stored({1, 1}, 200, 300), {200, 300}, ErrorKind::InvalidArgument, "shape [1, 1]");
  expect_error(stored({2, 3}, 200, 300), {200, 300}, ErrorKind::Unsupported, "block-wise");
  WeightMap negative = stored({});
  negative["model.layers.0.self_attn.q_proj.weight_scale"].data[0] = -1;
  expect_error(negative, {6, 8}, ErrorKind::InvalidArgument, "not a finite positive");
  WeightMap bad_input = stored({});
  bad_input["model.layers.0.self_attn.q_proj.input_scale"] = HostTensor{{2}, {1.0f, 2.0f}};
  expect_error(bad_input, {6, 8}, ErrorKind::InvalidArgument, "input scale");
  expect_error(stored({}), {6, 9}, ErrorKind::InvalidArgument, "expected [6, 9]");
}

TEST(Fp8Load, WhichWeightsAreQuantised) {
  EXPECT_TRUE(is_fp8_linear_name("model.layers.3.self_attn.qkv_proj.weight"));
  EXPECT_TRUE(is_fp8_linear_name("model.layers.0.mlp.down_proj.weight"));
  EXPECT_FALSE(is_fp8_linear_name("model.embed_tokens.weight"));
  EXPECT_FALSE(is_fp8_linear_name("lm_head.weight"));
  EXPECT_FALSE(is_fp8_linear_name("model.layers.0.input_layernorm.weight"));
  EXPECT_FALSE(is_fp8_linear_name("model.layers.0.self_attn.qkv_proj.bias"));
}

TEST(Fp8Load, StackedPartsTakeTheLargestStaticScale) {
  Fp8Weight a = quantize_fp8_weight(random_matrix(2, 4, 9)),
            b = quantize_fp8_weight(random_matrix(3, 4, 10));
  a.input_scale = 0.5f, b.input_scale = 0.75f;
  const Fp8Weight s = stack_fp8_weights({a, b});
  EXPECT_EQ(s.rows, 5);
  EXPECT_EQ(s.input_scale, 0.75f);
  EXPECT_EQ(s.scales[3], b.scales[1]);
  EXPECT_EQ(s.codes[9], b.codes[1]);
  b.input_scale = 0;
  EXPECT_THROW(stack_fp8_weights({a, b}), Error);
}

}  // namespace
}  // namespace nc

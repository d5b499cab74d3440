// core/fp8.h against PyTorch's float8_e4m3fn (tests/data/fp8/e4m3fn.txt, tools/make_fp8_table.py):
// every code decodes to torch's value, every conversion case (ties, the floats either side of
// each tie, overflow, infinities, subnormals, random values) gives torch's code, and the
// quantise/dequantise helpers agree with the scalar functions.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/fp8.h"

namespace nc {
namespace {

struct Table {
  std::vector<float> codes;                        // 256 entries
  std::vector<std::pair<float, int>> conversions;  // (input, torch's code)
};

Table load_table() {
  std::ifstream f(NC_FIXTURES_DIR "/../data/fp8/e4m3fn.txt");
  EXPECT_TRUE(f.good()) << "tests/data/fp8/e4m3fn.txt missing";
  Table t;
  std::string kind, a, b;
  while (f >> kind >> a >> b) {
    if (kind == "code")
      t.codes.push_back(b == "nan" ? std::nanf("") : std::strtof(b.c_str(), nullptr));
    else
      t.conversions.emplace_back(std::strtof(a.c_str(), nullptr), std::stoi(b));
  }
  return t;
}

TEST(Fp8, EveryCodeDecodesToTorchsValue) {
  const Table t = load_table();
  ASSERT_EQ(t.codes.size(), 256u);
  for (int c = 0; c < 256; ++c) {
    const float got = e4m3_to_f32(uint8_t(c)), want = t.codes[c];
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
      continue;
    }
    EXPECT_EQ(got, want) << "code " << c;
    EXPECT_EQ(std::signbit(got), std::signbit(want)) << "code " << c;
    EXPECT_EQ(e4m3_table()[c], got) << "code " << c;
  }
  EXPECT_EQ(e4m3_to_f32(0x7e), kE4M3Max);
  EXPECT_EQ(e4m3_to_f32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
}

TEST(Fp8, ConversionsMatchTorch) {
  const Table t = load_table();
  ASSERT_GT(t.conversions.size(), 1000u);
  int ties = 0;
  for (const auto& [x, want] : t.conversions) {
    EXPECT_EQ(int(f32_to_e4m3(x)), want) << "input " << x << " (" << std::hexfloat << x << ")";
    ties += std::fabs(x) > 0 && e4m3_to_f32(uint8_t(want)) != x;
  }
  EXPECT_GT(ties, 700);  // the table does exercise rounding, not only exact codes
}

TEST(Fp8, EveryFiniteCodeRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;  // NaN
    EXPECT_EQ(int(f32_to_e4m3(e4m3_to_f32(uint8_t(c)))), c) << "code " << c;
  }
}

TEST(Fp8, TiesGoToEvenAndOverflowSaturates) {
  EXPECT_EQ(f32_to_e4m3(1.0625f), 0x38);             // between 1 (even) and 1.125
  EXPECT_EQ(f32_to_e4m3(1.1875f), 0x3a);             // between 1.125 and 1.25 (even)
  EXPECT_EQ(f32_to_e4m3(std::ldexp(1.0f, -10)), 0);  // half the smallest subnormal: to 0
  EXPECT_EQ(f32_to_e4m3(std::ldexp(3.0f, -10)), 2);  // 1.5 subnormal steps: to 2
  EXPECT_EQ(f32_to_e4m3(464.0f), 0x7e);
  EXPECT_EQ(f32_to_e4m3(1e30f), 0x7e);
  EXPECT_EQ(f32_to_e4m3(-INFINITY), 0xfe);
  EXPECT_EQ(f32_to_e4m3(INFINITY), 0x7e);
  EXPECT_EQ(f32_to_e4m3(std::nanf("")), 0x7f);
  EXPECT_EQ(f32_to_e4m3(-std::nanf("")), 0xff);
  EXPECT_EQ(f32_to_e4m3(-0.0f), 0x80);
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0xff)));
}

TEST(Fp8, QuantizeDividesByTheScale) {
  const std::vector<float> x = {0.5f, -3.0f, 100.0f, 1e4f, 0.001f};
  std::vector<uint8_t> q(x.size());
  quantize_e4m3(x.data(), int64_t(x.size()), 1.0f / 4.0f, q.data());
  std::vector<float> back(x.size());
  dequantize_e4m3(q.data(), int64_t(q.size()), back.data());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(q[i], f32_to_e4m3(x[i] / 4.0f)) << i;
    EXPECT_EQ(back[i], e4m3_to_f32(q[i])) << i;
  }
  EXPECT_EQ(back[3], kE4M3Max);  // 2500 saturates
  EXPECT_EQ(back[1], -0.75f);
}

}  // namespace
}  // namespace nc

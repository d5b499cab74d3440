#include <gtest/gtest.h>

#include "core/tensor.h"

namespace nc {

TEST(Tensor, ViewAndSlice) {
  Tensor t = Tensor::empty_host({4, 6}, DType::F32);
  float* p = t.ptr<float>();
  for (int i = 0; i < 24; ++i) p[i] = float(i);
  Tensor v = t.view({2, -1});
  EXPECT_EQ(v.shape(), (Shape{2, 12}));
  Tensor s = t.slice(1, 3);
  EXPECT_EQ(s.shape(), (Shape{2, 6}));
  EXPECT_EQ(s.ptr<float>()[0], 6.0f);
  EXPECT_TRUE(s.is_contiguous());
}

TEST(Tensor, MisuseGivesClearErrors) {
  Tensor t = Tensor::empty_host({4, 6}, DType::F32);
  EXPECT_THROW(t.view({5, 5}), Error);
  EXPECT_THROW(t.view({-1, -1}), Error);
  EXPECT_THROW(t.slice(3, 5), Error);
  EXPECT_THROW(t.ptr<uint16_t>(), Error);
  EXPECT_THROW(t.dim(2), Error);
  EXPECT_THROW(t.expect_shape({6, 4}, "op"), Error);
  Tensor strided(t.data(), {4, 3}, {6, 2}, DType::F32);
  EXPECT_FALSE(strided.is_contiguous());
  EXPECT_THROW(strided.view({12}), Error);
  try {
    t.expect_dtype(DType::BF16, "linear");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("linear"), std::string::npos);
  }
}

TEST(DType, HalfConversionsRoundTrip) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f}) {
    EXPECT_EQ(f16_to_f32(f32_to_f16(f)), f) << f;
    EXPECT_NEAR(bf16_to_f32(f32_to_bf16(f)), f, std::abs(f) / 128);
  }
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
}

}  // namespace nc

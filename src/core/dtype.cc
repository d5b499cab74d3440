#include "core/dtype.h"

#include <cmath>

#include "core/error.h"

namespace nc {

namespace {

struct DTypeInfo {
  std::string_view name;
  int64_t block_elems;
  size_t block_bytes;
};

// GGML's block layouts (ggml-common.h): Q4_0 = f16 scale + 16 bytes of nibbles; Q4_1 adds an f16
// minimum; Q8_0 = f16 scale + 32 int8; the K formats are 256-value super-blocks.
DTypeInfo info(DType t) {
  switch (t) {
    case DType::F32:
      return {"f32", 1, 4};
    case DType::I32:
      return {"i32", 1, 4};
    case DType::F16:
      return {"f16", 1, 2};
    case DType::BF16:
      return {"bf16", 1, 2};
    case DType::Q4_0:
      return {"q4_0", 32, 18};
    case DType::Q4_1:
      return {"q4_1", 32, 20};
    case DType::Q8_0:
      return {"q8_0", 32, 34};
    case DType::Q4_K:
      return {"q4_k", 256, 144};
    case DType::Q5_K:
      return {"q5_k", 256, 176};
    case DType::Q6_K:
      return {"q6_k", 256, 210};
    case DType::F8E4M3:
      return {"fp8_e4m3", 1, 1};
  }
  return {"?", 1, 0};
}

}  // namespace

size_t dtype_size(DType t) {
  NC_CHECK(!dtype_is_block(t), "dtype {} is a block format: it has no per-element size",
           dtype_name(t));
  return info(t).block_bytes;
}

std::string_view dtype_name(DType t) {
  return info(t).name;
}
bool dtype_is_block(DType t) {
  return info(t).block_elems > 1;
}
int64_t dtype_block_elems(DType t) {
  return info(t).block_elems;
}
size_t dtype_block_bytes(DType t) {
  return info(t).block_bytes;
}

size_t dtype_bytes(DType t, int64_t n) {
  const DTypeInfo i = info(t);
  NC_CHECK(n >= 0 && n % i.block_elems == 0,
           "{} values of {} are not a whole number of {}-value blocks", n, i.name, i.block_elems);
  return size_t(n / i.block_elems) * i.block_bytes;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: value = mant * 2^-24
      float f = std::ldexp(float(mant), -24);
      return (h & 0x8000u) ? -f : f;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u);
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // overflow to inf
  if (ax < 0x38800000u) {                        // subnormal or zero: round to nearest even
    float af;
    std::memcpy(&af, &ax, 4);
    return sign | uint16_t(std::nearbyint(af * 16777216.0f));
  }
  uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u) - (112u << 23);
  return sign | uint16_t(r >> 13);
}

}  // namespace nc

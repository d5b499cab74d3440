// FP8 E4M3 conversions (contract: core/fp8.h).
#include "core/fp8.h"

#include <array>
#include <cmath>

namespace nc {

uint8_t f32_to_e4m3(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  if (std::isnan(x)) return sign | 0x7f;
  const float a = std::fabs(x);
  if (a > kE4M3Max) return sign | 0x7e;  // saturate (infinities too)
  // Below the smallest normal (2^-6) the codes are m * 2^-9, m = 0..7; m = 8 is the code of 2^-6
  // itself, so the subnormal rounding carries into the first normal code exactly. Scaling by a
  // power of two is exact and rint rounds half to even (the default rounding mode).
  if (a < 0.015625f) return sign | uint8_t(std::rint(a * 512.0f));
  int e = 0;
  const float frac = std::frexp(a, &e);  // a = frac * 2^e, frac in [0.5, 1)
  int m = int(std::rint((frac * 2.0f - 1.0f) * 8.0f));
  int biased = e - 1 + 7;
  if (m == 8) m = 0, ++biased;  // rounded up to the next power of two (never past 448 here)
  return sign | uint8_t(biased << 3 | m);
}

float e4m3_to_f32(uint8_t code) {
  const int e = (code >> 3) & 0xf, m = code & 7;
  const float sign = (code & 0x80) ? -1.0f : 1.0f;
  if (e == 0xf && m == 7) return std::nanf("");
  if (e == 0) return sign * std::ldexp(float(m), -9);
  return sign * std::ldexp(1.0f + float(m) / 8.0f, e - 7);
}

const float* e4m3_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int c = 0; c < 256; ++c) t[c] = e4m3_to_f32(uint8_t(c));
    return t;
  }();
  return table.data();
}

void quantize_e4m3(const float* src, int64_t n, float inv_scale, uint8_t* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_e4m3(src[i] * inv_scale);
}

void dequantize_e4m3(const uint8_t* src, int64_t n, float* dst) {
  const float* t = e4m3_table();
  for (int64_t i = 0; i < n; ++i) dst[i] = t[src[i]];
}

}  // namespace nc

// The portable int16-activation kernels: plain C++ for any CPU, and the reference the AVX2 path
// equals bit for bit (quant_i16.h gives the order both follow).
#include "backend/cpu/quant_i16.h"

#include <cmath>

#include "core/dtype.h"

namespace nc::qk {
namespace {

float h2f(uint16_t h) {
  return f16_to_f32(h);
}

float hsum8(const float* a) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

void quantize(const float* x, int64_t cols, void* out) {
  auto* b = static_cast<XBlock16*>(out);
  for (int64_t i = 0; i < cols / kQK; ++i, x += kQK, ++b) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 32767.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) sum += b->q[j] = int16_t(std::nearbyint(x[j] * id));
    float t[8];
    for (int l = 0; l < 8; ++l) t[l] = ((x[l] + x[l + 8]) + x[l + 16]) + x[l + 24];
    b->d = d;
    b->s = hsum8(t);
    b->e = b->s - d * float(sum);
  }
}

// One 32-value block's lane sums, scaled: acc[l] = fma(f, P[l], acc[l]); `lo`/`hi` restrict the
// elements to e < 16 / e >= 16 (Q6_K's two sub-blocks).
void block_fma(const int* wq, const int16_t* xq, float f, float* acc, bool lo = true,
               bool hi = true) {
  for (int l = 0; l < 8; ++l) {
    int p = 0;
    if (lo) p += wq[2 * l] * xq[2 * l] + wq[2 * l + 1] * xq[2 * l + 1];
    if (hi) p += wq[2 * l + 16] * xq[2 * l + 16] + wq[2 * l + 17] * xq[2 * l + 17];
    acc[l] = std::fma(f, float(p), acc[l]);
  }
}

// Each format: the int16 weights of 32-value block (or sub-block) g, then its factor and min.
float one_q4_0(const void* w, const XBlock16* y, int64_t cols) {
  const auto* b = static_cast<const BlockQ4_0*>(w);
  float acc[8] = {};
  for (int64_t i = 0; i < cols / kQK; ++i) {
    int wq[kQK];
    for (int j = 0; j < 16; ++j)
      wq[j] = (b[i].qs[j] & 0x0F) - 8, wq[j + 16] = (b[i].qs[j] >> 4) - 8;
    block_fma(wq, y[i].q, h2f(b[i].d) * y[i].d, acc);
  }
  return hsum8(acc);
}

float one_q4_1(const void* w, const XBlock16* y, int64_t cols) {
  const auto* b = static_cast<const BlockQ4_1*>(w);
  float acc[8] = {}, mins = 0.0f, cen = 0.0f;
  for (int64_t i = 0; i < cols / kQK; ++i) {
    int wq[kQK];
    for (int j = 0; j < 16; ++j) wq[j] = b[i].qs[j] & 0x0F, wq[j + 16] = b[i].qs[j] >> 4;
    block_fma(wq, y[i].q, h2f(b[i].d) * y[i].d, acc);
    mins = mins + h2f(b[i].m) * y[i].s;
    cen = cen + h2f(b[i].d) * (kCentreQ4 * y[i].e);
  }
  return (hsum8(acc) + mins) + cen;
}

float one_q8_0(const void* w, const XBlock16* y, int64_t cols) {
  const auto* b = static_cast<const BlockQ8_0*>(w);
  float acc[8] = {};
  for (int64_t i = 0; i < cols / kQK; ++i) {
    int wq[kQK];
    for (int j = 0; j < kQK; ++j) wq[j] = b[i].qs[j];
    block_fma(wq, y[i].q, h2f(b[i].d) * y[i].d, acc);
  }
  return hsum8(acc);
}

template <bool kFive, typename Block>
float one_q45_k(const void* w, const XBlock16* y, int64_t cols) {
  const auto* b = static_cast<const Block*>(w);
  float acc[8] = {}, mins = 0.0f, cen = 0.0f;
  for (int64_t i = 0; i < cols / kQKK; ++i)
    for (int g = 0; g < 8; ++g) {
      int sc, mn;
      k_scale_min(b[i].scales, g, &sc, &mn);
      const uint8_t* q = b[i].qs + 32 * (g / 2);
      int wq[kQK];
      for (int j = 0; j < kQK; ++j) {
        wq[j] = (q[j] >> (4 * (g % 2))) & 0x0F;
        if constexpr (kFive)
          wq[j] |= ((reinterpret_cast<const BlockQ5_K*>(b + i)->qh[j] >> g) & 1) << 4;
      }
      const XBlock16& x = y[8 * i + g];
      const float dl = h2f(b[i].d) * float(sc);
      block_fma(wq, x.q, dl * x.d, acc);
      mins = mins + (-(h2f(b[i].dmin) * float(mn))) * x.s;
      cen = cen + dl * ((kFive ? kCentreQ5 : kCentreQ4) * x.e);
    }
  return (hsum8(acc) + mins) + cen;
}

float one_q6_k(const void* w, const XBlock16* y, int64_t cols) {
  const auto* b = static_cast<const BlockQ6_K*>(w);
  float acc[8] = {};
  for (int64_t i = 0; i < cols / kQKK; ++i)
    for (int c = 0; c < 8; ++c) {
      const int g = c / 4, part = c % 4;
      const uint8_t* ql = b[i].ql + 64 * g + 32 * (part % 2);
      const uint8_t* qh = b[i].qh + 32 * g;
      int wq[kQK];
      for (int j = 0; j < kQK; ++j)
        wq[j] = (((ql[j] >> (4 * (part / 2))) & 0x0F) | (((qh[j] >> (2 * part)) & 3) << 4)) - 32;
      const XBlock16& x = y[8 * i + c];
      const float d = h2f(b[i].d);
      block_fma(wq, x.q, (d * float(b[i].scales[2 * c])) * x.d, acc, true, false);
      block_fma(wq, x.q, (d * float(b[i].scales[2 * c + 1])) * x.d, acc, false, true);
    }
  return hsum8(acc);
}

template <float (*One)(const void*, const XBlock16*, int64_t)>
void rows(const void* w, const void* x, int64_t x_stride, int nx, int64_t cols, float* out,
          int64_t out_stride) {
  for (int i = 0; i < nx; ++i)
    out[i * out_stride] = One(
        w, reinterpret_cast<const XBlock16*>(static_cast<const uint8_t*>(x) + i * x_stride), cols);
}

I16Kernels make() {
  I16Kernels k;
  k.quantize = quantize;
  k.dot[kQ4_0] = rows<one_q4_0>;
  k.dot[kQ4_1] = rows<one_q4_1>;
  k.dot[kQ8_0] = rows<one_q8_0>;
  k.dot[kQ4_K] = rows<one_q45_k<false, BlockQ4_K>>;
  k.dot[kQ5_K] = rows<one_q45_k<true, BlockQ5_K>>;
  k.dot[kQ6_K] = rows<one_q6_k>;
  return k;
}

}  // namespace

const I16Kernels kPortableI16Kernels = make();

}  // namespace nc::qk

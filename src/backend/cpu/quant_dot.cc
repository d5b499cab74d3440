// The portable kernels: plain C++ for any CPU, and the reference the vector paths are tested
// against. Integer sums per block, then one float multiply-add per block (or per super-block).
#include <cmath>
#include <cstring>

#include "backend/cpu/quant_dot.h"
#include "core/dtype.h"

namespace nc::qk {
namespace {

float h2f(uint16_t h) {
  return f16_to_f32(h);
}

// Quantizes n floats (a block) to int8 with the scale max|x| / 127; returns the scale.
float quantize_block(const float* x, int n, int8_t* q) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(x[i]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < n; ++i) q[i] = int8_t(std::nearbyint(x[i] * id));
  return d;
}

void quantize32(const float* x, int64_t cols, void* out) {
  auto* b = static_cast<XBlock32*>(out);
  for (int64_t i = 0; i < cols / kQK; ++i, x += kQK, ++b) {
    b->d = quantize_block(x, kQK, b->q);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) sum += b->q[j];
    b->s = b->d * float(sum);
  }
}

void quantize256(const float* x, int64_t cols, void* out) {
  auto* b = static_cast<XBlock256*>(out);
  for (int64_t i = 0; i < cols / kQKK; ++i, x += kQKK, ++b) {
    b->d = quantize_block(x, kQKK, b->q);
    for (int g = 0; g < kQKK / 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += b->q[16 * g + j];
      b->bsums[g] = int16_t(sum);
    }
  }
}

// Float rows: eight interleaved partial sums (lane i takes elements i, i + 8, ...), then a fixed
// pairwise reduction; cols need not be a multiple of 8 (the tail joins lanes 0..).
template <typename Load>
float dot_float_row(const void* w, const float* x, int64_t cols, Load load) {
  float acc[8] = {};
  for (int64_t k = 0; k < cols; ++k) acc[k % 8] += load(w, k) * x[k];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

float one_f32(const void* w, const void* x, int64_t cols) {
  return dot_float_row(w, static_cast<const float*>(x), cols,
                       [](const void* p, int64_t k) { return static_cast<const float*>(p)[k]; });
}
float one_f16(const void* w, const void* x, int64_t cols) {
  return dot_float_row(w, static_cast<const float*>(x), cols, [](const void* p, int64_t k) {
    return h2f(static_cast<const uint16_t*>(p)[k]);
  });
}
float one_bf16(const void* w, const void* x, int64_t cols) {
  return dot_float_row(w, static_cast<const float*>(x), cols, [](const void* p, int64_t k) {
    return bf16_to_f32(static_cast<const uint16_t*>(p)[k]);
  });
}

float one_q4_0(const void* w, const void* x, int64_t cols) {
  const auto* b = static_cast<const BlockQ4_0*>(w);
  const auto* y = static_cast<const XBlock32*>(x);
  float acc = 0.0f;
  for (int64_t i = 0; i < cols / kQK; ++i) {
    int sum = 0;
    for (int j = 0; j < kQK / 2; ++j)
      sum += ((b[i].qs[j] & 0x0F) - 8) * y[i].q[j] + ((b[i].qs[j] >> 4) - 8) * y[i].q[j + 16];
    acc += h2f(b[i].d) * y[i].d * float(sum);
  }
  return acc;
}

float one_q4_1(const void* w, const void* x, int64_t cols) {
  const auto* b = static_cast<const BlockQ4_1*>(w);
  const auto* y = static_cast<const XBlock32*>(x);
  float acc = 0.0f;
  for (int64_t i = 0; i < cols / kQK; ++i) {
    int sum = 0;
    for (int j = 0; j < kQK / 2; ++j)
      sum += (b[i].qs[j] & 0x0F) * y[i].q[j] + (b[i].qs[j] >> 4) * y[i].q[j + 16];
    acc += h2f(b[i].d) * y[i].d * float(sum) + h2f(b[i].m) * y[i].s;
  }
  return acc;
}

float one_q8_0(const void* w, const void* x, int64_t cols) {
  const auto* b = static_cast<const BlockQ8_0*>(w);
  const auto* y = static_cast<const XBlock32*>(x);
  float acc = 0.0f;
  for (int64_t i = 0; i < cols / kQK; ++i) {
    int sum = 0;
    for (int j = 0; j < kQK; ++j) sum += b[i].qs[j] * y[i].q[j];
    acc += h2f(b[i].d) * y[i].d * float(sum);
  }
  return acc;
}

// Q4_K and Q5_K: sum over sub-blocks of sc * (q . xq), and of mn * (sum of xq).
template <bool kFive, typename Block>
float one_q45_k(const void* w, const void* x, int64_t cols) {
  const auto* b = static_cast<const Block*>(w);
  const auto* y = static_cast<const XBlock256*>(x);
  float acc = 0.0f;
  for (int64_t i = 0; i < cols / kQKK; ++i) {
    int sumq = 0, summ = 0;
    for (int sb = 0; sb < 8; ++sb) {
      int sc, mn;
      k_scale_min(b[i].scales, sb, &sc, &mn);
      const uint8_t* q = b[i].qs + 32 * (sb / 2);
      const int8_t* xq = y[i].q + 32 * sb;
      int s = 0;
      for (int j = 0; j < 32; ++j) {
        int v = (q[j] >> (4 * (sb % 2))) & 0x0F;
        if constexpr (kFive)
          v |= ((reinterpret_cast<const BlockQ5_K*>(b + i)->qh[j] >> sb) & 1) << 4;
        s += v * xq[j];
      }
      sumq += sc * s;
      summ += mn * (y[i].bsums[2 * sb] + y[i].bsums[2 * sb + 1]);
    }
    acc += h2f(b[i].d) * y[i].d * float(sumq) - h2f(b[i].dmin) * y[i].d * float(summ);
  }
  return acc;
}

float one_q6_k(const void* w, const void* x, int64_t cols) {
  const auto* b = static_cast<const BlockQ6_K*>(w);
  const auto* y = static_cast<const XBlock256*>(x);
  float acc = 0.0f;
  for (int64_t i = 0; i < cols / kQKK; ++i) {
    int sum = 0;
    for (int sub = 0; sub < 16; ++sub) {
      int s = 0;
      for (int e = 16 * sub; e < 16 * sub + 16; ++e) {
        const int g = e / 128, r = e % 128;
        const int lo = (b[i].ql[64 * g + r % 64] >> (4 * (r / 64))) & 0x0F;
        const int hi = (b[i].qh[32 * g + r % 32] >> (2 * (r / 32))) & 3;
        s += ((lo | (hi << 4)) - 32) * y[i].q[e];
      }
      sum += b[i].scales[sub] * s;
    }
    acc += h2f(b[i].d) * y[i].d * float(sum);
  }
  return acc;
}

template <float (*One)(const void*, const void*, int64_t)>
void rows(const void* w, const void* x, int64_t x_stride, int nx, int64_t cols, float* out,
          int64_t out_stride) {
  for (int i = 0; i < nx; ++i)
    out[i * out_stride] = One(w, static_cast<const uint8_t*>(x) + i * x_stride, cols);
}

}  // namespace

const QuantKernels kPortableKernels = {
    quantize32,
    quantize256,
    rows<one_f32>,
    rows<one_f16>,
    rows<one_bf16>,
    rows<one_q4_0>,
    rows<one_q4_1>,
    rows<one_q8_0>,
    rows<one_q45_k<false, BlockQ4_K>>,
    rows<one_q45_k<true, BlockQ5_K>>,
    rows<one_q6_k>,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
};

}  // namespace nc::qk

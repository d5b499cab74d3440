// Helpers for the quantized CPU matmul tests: random valid weight matrices in every stored format
// (random quants, f16 scales within sane ranges) and float64 references.
#pragma once
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/cpu_matmul.h"
#include "backend/cpu/quant_dot.h"
#include "backend/cpu/quant_i16.h"
#include "core/dtype.h"
#include "formats/gguf.h"

namespace nc::test {

inline constexpr DType kWeightDTypes[] = {DType::F32,  DType::F16,  DType::BF16,
                                          DType::Q4_0, DType::Q4_1, DType::Q8_0,
                                          DType::Q4_K, DType::Q5_K, DType::Q6_K};

inline void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// A [rows, cols] matrix of random bytes whose scale fields are then set to f16 values that keep
// dequantized weights around unit size.
inline std::vector<uint8_t> random_weights(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  const size_t row_bytes = dtype_bytes(t, cols);
  std::vector<uint8_t> w(row_bytes * size_t(rows));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f), scale(0.002f, 0.02f);
  std::uniform_int_distribution<int> byte(0, 255);
  const int64_t n = rows * cols;
  if (t == DType::F32) {
    for (int64_t i = 0; i < n; ++i) reinterpret_cast<float*>(w.data())[i] = u(rng);
    return w;
  }
  if (t == DType::F16 || t == DType::BF16) {
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t h = t == DType::F16 ? f32_to_f16(u(rng)) : f32_to_bf16(u(rng));
      std::memcpy(w.data() + 2 * i, &h, 2);
    }
    return w;
  }
  for (auto& b : w) b = uint8_t(byte(rng));
  const size_t bb = dtype_block_bytes(t);
  for (size_t off = 0; off < w.size(); off += bb) {
    uint8_t* b = w.data() + off;
    switch (t) {
      case DType::Q4_0:
        put_f16(b, scale(rng) * 10.0f);
        break;
      case DType::Q4_1:
        put_f16(b, scale(rng) * 10.0f);
        put_f16(b + 2, -u(rng));
        break;
      case DType::Q8_0:
        put_f16(b, scale(rng));
        break;
      case DType::Q4_K:
      case DType::Q5_K:
        put_f16(b, scale(rng) / 4.0f);
        put_f16(b + 2, scale(rng) / 2.0f);
        break;
      case DType::Q6_K:
        put_f16(b + 208, scale(rng) / 20.0f);
        break;
      default:
        break;
    }
  }
  return w;
}

inline std::vector<float> random_x(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = normal(rng);
  return x;
}

inline std::vector<float> dequantized(DType t, const std::vector<uint8_t>& w, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  dequantize(ggml_type_for(t), w.data(), out.data(), n);
  return out;
}

// The activation row as the format's dot product sees it (dequantized int8 blocks in int8 mode,
// or x itself; int16 mode: its quantized values, though its min terms use x's own sums).
inline std::vector<float> activation_as_seen(DType t, CpuActivations act, const float* x,
                                             int64_t cols) {
  std::vector<float> out(x, x + cols);
  if (!dtype_is_block(t) || act == CpuActivations::F32) return out;
  if (act == CpuActivations::Int16) {
    std::vector<qk::XBlock16> b(size_t(cols / qk::kQK));
    qk::kPortableI16Kernels.quantize(x, cols, b.data());
    for (int64_t i = 0; i < cols; ++i)
      out[size_t(i)] = b[size_t(i / qk::kQK)].d * float(b[size_t(i / qk::kQK)].q[i % qk::kQK]);
    return out;
  }
  const int bs = dtype_block_elems(t) == 32 ? qk::kQK : qk::kQKK;
  if (bs == qk::kQK) {
    std::vector<qk::XBlock32> b(size_t(cols / bs));
    qk::kPortableKernels.quantize32(x, cols, b.data());
    for (int64_t i = 0; i < cols; ++i)
      out[size_t(i)] = b[size_t(i / bs)].d * float(b[size_t(i / bs)].q[i % bs]);
  } else {
    std::vector<qk::XBlock256> b(size_t(cols / bs));
    qk::kPortableKernels.quantize256(x, cols, b.data());
    for (int64_t i = 0; i < cols; ++i)
      out[size_t(i)] = b[size_t(i / bs)].d * float(b[size_t(i / bs)].q[i % bs]);
  }
  return out;
}

}  // namespace nc::test

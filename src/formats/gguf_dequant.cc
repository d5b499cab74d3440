// Dequantization of GGML block formats to float32. Block layouts follow the GGUF/ggml format
// documentation; the arithmetic order matches gguf-py's reference (scale first, then offset) so
// results agree bit for bit on hardware without fused multiply-add.
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "formats/gguf.h"

namespace nc {
namespace {

constexpr int kQK = 32;    // elements per block of the legacy formats
constexpr int kQKK = 256;  // elements per super-block of the K formats

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

float half(const uint8_t* p) {
  return f16_to_f32(load<uint16_t>(p));
}

// ---- legacy 32-element formats ----

// Q4_0: f16 d, 16 bytes of nibbles. Low nibbles are elements 0..15, high nibbles 16..31.
void deq_q4_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * float(int(qs[j] & 0x0F) - 8);
    y[j + kQK / 2] = d * float(int(qs[j] >> 4) - 8);
  }
}

// Q4_1: f16 d, f16 min, 16 bytes of nibbles.
void deq_q4_1(const uint8_t* b, float* y) {
  const float d = half(b), m = half(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * float(qs[j] & 0x0F) + m;
    y[j + kQK / 2] = d * float(qs[j] >> 4) + m;
  }
}

// Q5_0: f16 d, 32 high bits (bit i belongs to element i), 16 bytes of low nibbles.
void deq_q5_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const uint32_t qh = load<uint32_t>(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < kQK / 2; ++j) {
    int lo = (qs[j] & 0x0F) | int(((qh >> j) & 1u) << 4);
    int hi = (qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * float(lo - 16);
    y[j + kQK / 2] = d * float(hi - 16);
  }
}

// Q5_1: f16 d, f16 min, 32 high bits, 16 bytes of low nibbles.
void deq_q5_1(const uint8_t* b, float* y) {
  const float d = half(b), m = half(b + 2);
  const uint32_t qh = load<uint32_t>(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < kQK / 2; ++j) {
    int lo = (qs[j] & 0x0F) | int(((qh >> j) & 1u) << 4);
    int hi = (qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * float(lo) + m;
    y[j + kQK / 2] = d * float(hi) + m;
  }
}

// Q8_0: f16 d, 32 int8.
void deq_q8_0(const uint8_t* b, float* y) {
  const float d = half(b);
  for (int j = 0; j < kQK; ++j) y[j] = float(int8_t(b[2 + j])) * d;
}

// ---- K formats: 256-element super-blocks ----

// Q2_K: 16 scale bytes (low nibble scale, high nibble min), 64 bytes of 2-bit values, f16 d,
// f16 dmin. Each 32-byte half of qs holds 128 elements: shift 2*s gives elements s*32..s*32+31.
void deq_q2_k(const uint8_t* b, float* y) {
  const uint8_t* sc = b;
  const uint8_t* qs = b + 16;
  const float d = half(b + 80), dmin = half(b + 82);
  for (int i = 0; i < kQKK; ++i) {
    int g = i / 128, s = (i / 32) % 4, j = i % 32;
    int q = (qs[32 * g + j] >> (2 * s)) & 3;
    const float dl = d * float(sc[i / 16] & 0x0F), ml = dmin * float(sc[i / 16] >> 4);
    y[i] = dl * float(q) - ml;
  }
}

// Q3_K: 32 bytes of high-bit mask, 64 bytes of 2-bit values, 12 bytes of 6-bit signed scales,
// f16 d. A clear mask bit subtracts 4 from the value.
void deq_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  const float d = half(b + 108);
  float dl[16];
  for (int i = 0; i < 16; ++i) {
    int lo = (i < 8 ? sc[i] : sc[i - 8] >> 4) & 0x0F;
    int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
    dl[i] = d * float((lo | (hi << 4)) - 32);
  }
  for (int i = 0; i < kQKK; ++i) {
    int g = i / 128, s = (i / 32) % 4, j = i % 32;
    int q = (qs[32 * g + j] >> (2 * s)) & 3;
    int h = (hmask[j] >> (i / 32)) & 1;
    y[i] = dl[i / 16] * float(q - (h ? 0 : 4));
  }
}

// The 12 scale bytes of Q4_K/Q5_K pack eight 6-bit scales and eight 6-bit mins.
void k_scale_min(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 0x3F;
    *m = s[j + 4] & 0x3F;
  } else {
    *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 2) & 0x30);
    *m = (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30);
  }
}

// Q4_K: f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles; each 32-byte group holds two
// 32-element sub-blocks (low nibbles first).
void deq_q4_k(const uint8_t* b, float* y) {
  const float d = half(b), dmin = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int sb = 0; sb < 8; ++sb) {
    int sc, m;
    k_scale_min(scales, sb, &sc, &m);
    const float dl = d * float(sc), ml = dmin * float(m);
    const uint8_t* q = qs + 32 * (sb / 2);
    const int shift = 4 * (sb % 2);
    for (int j = 0; j < 32; ++j) y[sb * 32 + j] = dl * float((q[j] >> shift) & 0x0F) - ml;
  }
}

// Q5_K: as Q4_K plus 32 bytes of fifth bits (bit sb of qh[j] belongs to sub-block sb).
void deq_q5_k(const uint8_t* b, float* y) {
  const float d = half(b), dmin = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int sb = 0; sb < 8; ++sb) {
    int sc, m;
    k_scale_min(scales, sb, &sc, &m);
    const float dl = d * float(sc), ml = dmin * float(m);
    const uint8_t* q = qs + 32 * (sb / 2);
    const int shift = 4 * (sb % 2);
    for (int j = 0; j < 32; ++j) {
      int v = ((q[j] >> shift) & 0x0F) | (((qh[j] >> sb) & 1) << 4);
      y[sb * 32 + j] = dl * float(v) - ml;
    }
  }
}

// Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8 scales, f16 d.
void deq_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half(b + 208);
  for (int i = 0; i < kQKK; ++i) {
    int g = i / 128, r = i % 128;
    int lo = (ql[64 * g + r % 64] >> (4 * (r / 64))) & 0x0F;
    int hi = (qh[32 * g + r % 32] >> (2 * (r / 32))) & 3;
    y[i] = (d * float(sc[i / 16])) * float((lo | (hi << 4)) - 32);
  }
}

// Q8_K: f32 d, 256 int8, 16 int16 block sums (not needed to dequantize).
void deq_q8_k(const uint8_t* b, float* y) {
  const float d = load<float>(b);
  for (int i = 0; i < kQKK; ++i) y[i] = d * float(int8_t(b[4 + i]));
}

template <typename T>
void convert(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = float(load<T>(src + i * int64_t(sizeof(T))));
}

template <void (*F)(const uint8_t*, float*)>
void blocks(const uint8_t* src, float* dst, int64_t n, GgmlBlock blk) {
  for (int64_t i = 0; i < n / blk.elems; ++i) F(src + i * blk.bytes, dst + i * blk.elems);
}

}  // namespace

GgmlBlock ggml_block(GgmlType t) {
  switch (t) {
    case GgmlType::F32:
      return {1, 4};
    case GgmlType::F16:
      return {1, 2};
    case GgmlType::BF16:
      return {1, 2};
    case GgmlType::F64:
      return {1, 8};
    case GgmlType::I8:
      return {1, 1};
    case GgmlType::I16:
      return {1, 2};
    case GgmlType::I32:
      return {1, 4};
    case GgmlType::I64:
      return {1, 8};
    case GgmlType::Q4_0:
      return {kQK, 2 + kQK / 2};
    case GgmlType::Q4_1:
      return {kQK, 4 + kQK / 2};
    case GgmlType::Q5_0:
      return {kQK, 2 + 4 + kQK / 2};
    case GgmlType::Q5_1:
      return {kQK, 4 + 4 + kQK / 2};
    case GgmlType::Q8_0:
      return {kQK, 2 + kQK};
    case GgmlType::Q8_1:
      return {kQK, 4 + kQK};
    case GgmlType::Q2_K:
      return {kQKK, kQKK / 16 + kQKK / 4 + 4};
    case GgmlType::Q3_K:
      return {kQKK, kQKK / 8 + kQKK / 4 + 12 + 2};
    case GgmlType::Q4_K:
      return {kQKK, 4 + 12 + kQKK / 2};
    case GgmlType::Q5_K:
      return {kQKK, 4 + 12 + kQKK / 8 + kQKK / 2};
    case GgmlType::Q6_K:
      return {kQKK, kQKK / 2 + kQKK / 4 + kQKK / 16 + 2};
    case GgmlType::Q8_K:
      return {kQKK, 4 + kQKK + kQKK / 8};
  }
  fail_as(ErrorKind::Unsupported, "GGUF: unknown ggml type {}", uint32_t(t));
}

const char* ggml_type_name(GgmlType t) {
  switch (t) {
    case GgmlType::F32:
      return "F32";
    case GgmlType::F16:
      return "F16";
    case GgmlType::BF16:
      return "BF16";
    case GgmlType::F64:
      return "F64";
    case GgmlType::I8:
      return "I8";
    case GgmlType::I16:
      return "I16";
    case GgmlType::I32:
      return "I32";
    case GgmlType::I64:
      return "I64";
    case GgmlType::Q4_0:
      return "Q4_0";
    case GgmlType::Q4_1:
      return "Q4_1";
    case GgmlType::Q5_0:
      return "Q5_0";
    case GgmlType::Q5_1:
      return "Q5_1";
    case GgmlType::Q8_0:
      return "Q8_0";
    case GgmlType::Q8_1:
      return "Q8_1";
    case GgmlType::Q2_K:
      return "Q2_K";
    case GgmlType::Q3_K:
      return "Q3_K";
    case GgmlType::Q4_K:
      return "Q4_K";
    case GgmlType::Q5_K:
      return "Q5_K";
    case GgmlType::Q6_K:
      return "Q6_K";
    case GgmlType::Q8_K:
      return "Q8_K";
  }
  return "unknown";
}

void dequantize(GgmlType t, const uint8_t* src, float* dst, int64_t n) {
  const GgmlBlock blk = ggml_block(t);
  NC_CHECK(n >= 0 && n % blk.elems == 0,
           "dequantize: {} elements is not a multiple of the {} block "
           "size {}",
           n, ggml_type_name(t), blk.elems);
  switch (t) {
    case GgmlType::F32:
      std::memcpy(dst, src, size_t(n) * 4);
      return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = half(src + 2 * i);
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load<uint16_t>(src + 2 * i));
      return;
    case GgmlType::F64:
      convert<double>(src, dst, n);
      return;
    case GgmlType::I8:
      convert<int8_t>(src, dst, n);
      return;
    case GgmlType::I16:
      convert<int16_t>(src, dst, n);
      return;
    case GgmlType::I32:
      convert<int32_t>(src, dst, n);
      return;
    case GgmlType::I64:
      convert<int64_t>(src, dst, n);
      return;
    case GgmlType::Q4_0:
      blocks<deq_q4_0>(src, dst, n, blk);
      return;
    case GgmlType::Q4_1:
      blocks<deq_q4_1>(src, dst, n, blk);
      return;
    case GgmlType::Q5_0:
      blocks<deq_q5_0>(src, dst, n, blk);
      return;
    case GgmlType::Q5_1:
      blocks<deq_q5_1>(src, dst, n, blk);
      return;
    case GgmlType::Q8_0:
      blocks<deq_q8_0>(src, dst, n, blk);
      return;
    case GgmlType::Q2_K:
      blocks<deq_q2_k>(src, dst, n, blk);
      return;
    case GgmlType::Q3_K:
      blocks<deq_q3_k>(src, dst, n, blk);
      return;
    case GgmlType::Q4_K:
      blocks<deq_q4_k>(src, dst, n, blk);
      return;
    case GgmlType::Q5_K:
      blocks<deq_q5_k>(src, dst, n, blk);
      return;
    case GgmlType::Q6_K:
      blocks<deq_q6_k>(src, dst, n, blk);
      return;
    case GgmlType::Q8_K:
      blocks<deq_q8_k>(src, dst, n, blk);
      return;
    case GgmlType::Q8_1:
      break;
  }
  fail_as(ErrorKind::Unsupported, "dequantize: type {} is not supported", ggml_type_name(t));
}

std::optional<DType> dtype_for_ggml(GgmlType t) {
  switch (t) {
    case GgmlType::F32:
      return DType::F32;
    case GgmlType::F16:
      return DType::F16;
    case GgmlType::BF16:
      return DType::BF16;
    case GgmlType::Q4_0:
      return DType::Q4_0;
    case GgmlType::Q4_1:
      return DType::Q4_1;
    case GgmlType::Q8_0:
      return DType::Q8_0;
    case GgmlType::Q4_K:
      return DType::Q4_K;
    case GgmlType::Q5_K:
      return DType::Q5_K;
    case GgmlType::Q6_K:
      return DType::Q6_K;
    default:
      return std::nullopt;
  }
}

GgmlType ggml_type_for(DType t) {
  switch (t) {
    case DType::F32:
      return GgmlType::F32;
    case DType::F16:
      return GgmlType::F16;
    case DType::BF16:
      return GgmlType::BF16;
    case DType::Q4_0:
      return GgmlType::Q4_0;
    case DType::Q4_1:
      return GgmlType::Q4_1;
    case DType::Q8_0:
      return GgmlType::Q8_0;
    case DType::Q4_K:
      return GgmlType::Q4_K;
    case DType::Q5_K:
      return GgmlType::Q5_K;
    case DType::Q6_K:
      return GgmlType::Q6_K;
    case DType::I32:
    case DType::F8E4M3:
      break;
  }
  fail("dtype {} has no GGML type", dtype_name(t));
}

}  // namespace nc

// The block layouts the CPU matmul reads: GGML's weight blocks exactly as a GGUF file stores them
// (ggml-common.h; f16 values are raw 16-bit patterns), and the blocks an activation row is
// quantized into before it meets them.
//
// Weight blocks (the sizes are those of core/dtype.h's dtype_block_bytes):
//   Q4_0: w = d * (q - 8), q a nibble; low nibbles are elements 0..15, high ones 16..31.
//   Q4_1: w = d * q + m.
//   Q8_0: w = d * q, q int8.
//   Q4_K: 256 values = 8 sub-blocks of 32; w = d * sc[j] * q - dmin * mn[j] with 6-bit sc/mn
//         packed in 12 bytes; byte group g of qs holds sub-block 2g (low) and 2g+1 (high).
//   Q5_K: as Q4_K, plus bit j of qh[i] as the fifth bit of element i of sub-block j.
//   Q6_K: 16 sub-blocks of 16; w = d * sc[j] * (q - 32), q six bits (4 in ql, 2 in qh).
//
// Activation blocks (this backend's own, never on disk, so their scale is a float):
//   XBlock32: 32 values x ~= d * q, q in [-127, 127]; s = d * sum(q) (the Q4_1 min term).
//   XBlock256: 256 values x ~= d * q; bsums[i] = sum of q over values 16i..16i+15 (the K formats'
//              min and offset terms).
// Quantization: d = max|x| / 127 over the block, q = round-half-even(x / d) computed as x * (1/d)
// (d = 0 gives q = 0), identical on every ISA path.
//
// This header is included by the AVX2 translation unit: it must stay free of standard-library
// inline functions (plain structs and constants only).
#pragma once
#include <cstdint>

namespace nc::qk {

constexpr int kQK = 32;    // values per block of the 32-value formats
constexpr int kQKK = 256;  // values per super-block of the K formats
constexpr int kScaleBytesK = 12;

struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[kScaleBytesK];
  uint8_t qs[kQKK / 2];
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[kScaleBytesK];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

struct XBlock32 {
  float d, s;
  int8_t q[kQK];
};
// Block i of four XBlock32 rows side by side (rows r = 0..3): the same values, laid out so that a
// kernel loads the four scales, the four sums and the four quant vectors without gathering.
struct XBlock32x4 {
  float d[4], s[4];
  int8_t q[4][kQK];
};
struct XBlock256 {
  float d;
  int16_t bsums[kQKK / 16];
  int8_t q[kQKK];
};

// Sub-block j's 6-bit scale and min of a Q4_K/Q5_K super-block. Static (internal linkage), so
// the AVX2 unit's copy can never stand in for the portable one at link time.
static inline void k_scale_min(const uint8_t* s, int j, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 0x3F;
    *mn = s[j + 4] & 0x3F;
  } else {
    *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 2) & 0x30);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30);
  }
}

}  // namespace nc::qk

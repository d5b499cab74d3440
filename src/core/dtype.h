// Element types and their conversions (f16/bf16 stored as raw 16-bit patterns on the host).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace nc {

// Plain element types, then GGML's block formats (weights kept as a GGUF file stores them, on the
// CPU backend: a block of dtype_block_elems() values takes dtype_block_bytes() bytes, and a
// tensor of a block type has a last dimension that is a multiple of the block). F8E4M3: one byte
// per value, e4m3 codes (core/fp8.h); only an fp8 KV cache's pages have it.
enum class DType : uint8_t { F32, F16, BF16, I32, Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K, F8E4M3 };

// Bytes of one element; throws nc::Error for block types (they have no per-element size).
size_t dtype_size(DType t);
std::string_view dtype_name(DType t);
bool dtype_is_block(DType t);
int64_t dtype_block_elems(DType t);  // 1 for plain types
size_t dtype_block_bytes(DType t);   // dtype_size() for plain types
// Bytes of n values; throws nc::Error when n is not a whole number of blocks.
size_t dtype_bytes(DType t, int64_t n);

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

inline float bf16_to_f32(uint16_t b) {
  uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even, as torch does.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

}  // namespace nc

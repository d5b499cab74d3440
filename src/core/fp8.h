// FP8 E4M3 ("e4m3fn": 1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no infinities, one
// NaN pattern per sign, 0x7f / 0xff; largest finite +-448; subnormals step 2^-9), the element type
// of an fp8 KV cache (docs/memory.md).
//
// f32_to_e4m3 rounds to nearest, ties to even, and saturates: every value past +-448, infinities
// included, becomes +-448 (0x7e / 0xfe); NaN becomes 0x7f with its sign. That is CUDA's
// __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3), the conversion behind the __nv_fp8_e4m3
// constructor that FlashInfer's kernels and our append kernel use, so the CPU and the GPU write
// the same bytes; PyTorch 2.15's float32 -> torch.float8_e4m3fn gives the same codes (checked over
// every code, every tie and overflow in tests/data/fp8/e4m3fn.txt, made by
// tools/make_fp8_table.py). Saturating rather than producing NaN keeps one outlier from poisoning
// a whole attention row. e4m3_to_f32 is exact (every code is a float32).
#pragma once
#include <cstdint>

namespace nc {

inline constexpr float kE4M3Max = 448.0f;

uint8_t f32_to_e4m3(float x);
float e4m3_to_f32(uint8_t code);

// The 256 decoded codes, for loops that decode many values (e4m3_table()[c] == e4m3_to_f32(c)).
const float* e4m3_table();

// dst[i] = f32_to_e4m3(src[i] * inv_scale) for n values (the quantiser of an fp8 KV cache: values
// are divided by the cache's scale).
void quantize_e4m3(const float* src, int64_t n, float inv_scale, uint8_t* dst);
// dst[i] = e4m3_to_f32(src[i]) for n codes (no scale: attention folds it in elsewhere).
void dequantize_e4m3(const uint8_t* src, int64_t n, float* dst);

}  // namespace nc

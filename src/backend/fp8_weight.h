// FP8 linear weights (EngineConfig::quantization "fp8", issue #17; docs/memory.md "FP8 weights").
//
// A linear layer's weight W [M, K] is held as e4m3 codes (core/fp8.h) with one float32 scale per
// output row: W[m, k] ~ e4m3(codes[m, k]) * scale[m]. Quantised from float weights, scale[m] =
// max_k |W[m, k]| / 448 (an all-zero row gets scale 1) and codes[m, k] = e4m3(W[m, k] / scale[m]),
// rounded to nearest even and saturated (f32_to_e4m3). A checkpoint stored in FP8 brings its own
// codes and scales, which are kept as they are.
//
// Activations: each row x of the input is quantised before the product, with its own scale s =
// max_k |x[k]| / 448 (per-token dynamic, vLLM's fp8 "dynamic" scheme; an all-zero row gets 1) or,
// where the checkpoint gives one (`input_scale > 0`), that static scale for every row; x's codes
// are e4m3(x[k] / s). Then out[n, m] = (sum_k e4m3(qx[k]) * e4m3(codes[m, k])) * s * scale[m]:
// exactly the values a Hopper FP8 GEMM multiplies, with the scales applied to the float sum.
//
// On a backend, such a weight is one Tensor of dtype F8E4M3 and shape [M, K] whose memory holds
// the codes row after row, then (at fp8_scales_offset) the M float32 scales, then the input scale:
// linear() finds everything through the one tensor. Such a tensor must not be sliced.
#pragma once
#include <cstdint>
#include <vector>

#include "core/host_tensor.h"
#include "core/tensor.h"

namespace nc {

struct Fp8Weight {
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> codes;  // [rows, cols] e4m3
  std::vector<float> scales;   // [rows], > 0
  float input_scale = 0;       // > 0: a static activation scale; 0: per-token dynamic
};

// Per-row quantisation of a float32 HostTensor [M, K] (values in `data`); throws nc::Error for
// another rank or a raw tensor (dequantise first).
Fp8Weight quantize_fp8_weight(const HostTensor& w);
// The float32 values the FP8 weight stands for (code * scale), for a backend or a check that
// wants them.
HostTensor dequantize_fp8_weight(const Fp8Weight& w);
// Checks sizes and scales (finite, > 0); the error names `what` and the bad value.
void check_fp8_weight(const Fp8Weight& w, const char* what);

// The packed device layout: bytes of the whole buffer, and where the scales start (16-byte
// aligned after the codes); the input scale follows the M row scales.
int64_t fp8_packed_bytes(int64_t rows, int64_t cols);
int64_t fp8_scales_offset(int64_t rows, int64_t cols);
// The packed bytes of w (what upload copies to the device).
std::vector<uint8_t> pack_fp8_weight(const Fp8Weight& w);
// The row scales and the input scale of a packed F8E4M3 weight tensor in host memory.
const float* fp8_row_scales(const Tensor& w);
float fp8_input_scale(const Tensor& w);

// The activation scale of one row of K values: input_scale where > 0, else max|x| / 448 (1 for
// an all-zero row). Both backends use it.
float fp8_activation_scale(const float* x, int64_t K, float input_scale);

}  // namespace nc

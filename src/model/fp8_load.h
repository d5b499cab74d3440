// FP8 weights at load (ModelConfig::quantization, backend/fp8_weight.h): which tensors are
// quantised, and how an FP8 weight is made from a checkpoint's tensors.
//
// Quantised: the dense decoder's linear layers (q/k/v/o projections, gate/up/down, and their
// fused forms). Kept in the backend's dtype: the embeddings (a table lookup, no GEMM; tied ones
// are also the LM head), the norms and biases (vectors, a negligible share of the bytes), the LM
// head (its logits feed sampling directly, and vLLM keeps it unquantised too), and the MoE
// experts and MLA blocks (not covered yet).
//
// From a checkpoint: a weight stored as F8_E4M3 (Hugging Face's FP8 layout, as llm-compressor
// and vLLM write it) takes its scales from `<name>_scale` beside it ("...q_proj.weight_scale"):
// a scalar, [1] (per tensor), or [out] / [out, 1] (per output channel), float32 and finite > 0;
// and a static activation scale from "...q_proj.input_scale" (a scalar or [1]) where present.
// Block-wise scales ([ceil(out/128), ceil(in/128)], DeepSeek-V3) are refused by name. Any other
// weight (f32, f16, bf16, or a GGUF block format, dequantised first) is quantised per row.
// With quantization "none", an F8_E4M3 weight is dequantised (code * scale) to float32.
// Errors are nc::Error naming the tensor, its shape and the expected one.
#pragma once
#include <string>
#include <vector>

#include "backend/fp8_weight.h"
#include "core/host_tensor.h"

namespace nc {

// Whether `name` (a Hugging Face tensor name) is a linear weight that "fp8" quantises.
bool is_fp8_linear_name(const std::string& name);

// The FP8 weight `name` of `shape` [out, in] from w (stored FP8 with its scales, or quantised).
Fp8Weight fp8_weight_from(const WeightMap& w, const std::string& name, const Shape& shape);

// The parts' rows stacked in order (fused q/k/v, gate/up). The fused activation scale, where the
// parts have static ones, is their largest (one input meets all parts; the largest scale clips
// none of them).
Fp8Weight stack_fp8_weights(const std::vector<Fp8Weight>& parts);

}  // namespace nc

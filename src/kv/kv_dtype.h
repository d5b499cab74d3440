// The element type of the KV cache (EngineConfig::kv_cache_dtype, `--kv-cache-dtype`).
//
//   auto  the backend's own dtype: float32 on the CPU, bf16 on CUDA (what the cache always was);
//   bf16  bf16 pages: CUDA's auto; the CPU backend keeps float32 pages only and refuses it;
//   fp8   FP8 E4M3 codes (core/fp8.h), one byte a value: a page of the same tokens takes half the
//         bytes of a bf16 one (a quarter of the CPU's float32), so the same memory holds twice
//         the tokens of bf16.
//
// Scales (KVCacheShape::k_scale, v_scale): static, per tensor, one for K and one for V, 1.0 by
// default (vLLM's default when a checkpoint carries no calibrated scales); a value is divided by
// its scale when quantised. K's scale is folded into the softmax scale (q.k * sm_scale * k_scale)
// and V's multiplies the output, so the attention loops read raw codes. Per-head or dynamic
// (per-token) scales would need a scale store beside every page, written by the append and read
// by every kernel path and the host tier's copies; static per-tensor scales need none.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "core/dtype.h"

namespace nc {

enum class KVCacheDType : uint8_t { Auto, BF16, FP8 };

// "auto", "bf16", "fp8" (also "fp8_e4m3"); nc::Error (InvalidArgument) naming anything else.
KVCacheDType parse_kv_cache_dtype(std::string_view s);
std::string_view kv_cache_dtype_name(KVCacheDType t);

// The dtype of the page tensors for `t` on a backend whose own dtype is `backend_dtype`: auto is
// the backend's, fp8 F8E4M3, bf16 BF16.
DType kv_page_dtype(KVCacheDType t, DType backend_dtype);

}  // namespace nc

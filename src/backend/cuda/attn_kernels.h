// The attention kernels of one configuration, as a table of host functions: what the level
// planner calls, whether the configuration was compiled ahead (attn.cu) or at run time (the JIT,
// attn_registry.h). Plain C++ (no CUDA headers beyond the runtime API) so that both the host
// code and a generated .cu see the same layout.
//
// A configuration (AttnKernelKey) is: the kernel kind (FlashInfer's batch decode, its FA2 batch
// prefill with a causal mask, or without one, over pages; or its FA2 prefill with a causal mask
// over ragged K/V, whose values may have their own head dim: MLA's expanded form, 192 / 128 at
// DeepSeek's shapes, run-time compiled only), the head dim, the variant (FlashInfer's
// DefaultAttention flags: sliding window on/off, logits soft cap on/off) and the page dtype: bf16,
// or FP8 E4M3 (kv_fp8; queries and outputs stay bf16). FP8 configurations are never compiled in
// (only through NC_AOT_ATTENTION): the JIT builds them, which keeps the CUDA build's time flat.
// The GQA group size is not part of it: FlashInfer's decode dispatches every supported group
// inside one instantiation. The variant's values (window_left, logits_soft_cap, sm_scale) travel
// at run time in AttnIO; the flags only select the code that reads them.
//
// A run-time compiled object exports kAttnEntrySymbol, a function returning its table; the table
// names the key string it was built for (the registry rejects an object whose string differs).
#pragma once
#include <cstdint>
#include <string>

#include "backend/cuda/kernels.h"

namespace nc::cuda {

enum class AttnKind : int { Decode = 0, PrefillCausal = 1, PrefillNone = 2, RaggedCausal = 3 };

struct AttnKernelKey {
  AttnKind kind = AttnKind::Decode;
  int head_dim = 128;
  bool window = false;    // DefaultAttention's use_sliding_window
  bool soft_cap = false;  // DefaultAttention's use_logits_soft_cap
  bool kv_fp8 = false;    // FP8 E4M3 pages (DTypeKV = __nv_fp8_e4m3)
  int head_dim_vo = 0;    // RaggedCausal: the values' head dim (0: head_dim)
  bool operator==(const AttnKernelKey&) const = default;
};

// "decode_hd128_w0_sc0_bf16" ("..._bf16_kvfp8" over FP8 pages, "ragged_causal_hd192_vo128_..."
// with the values' head dim): the key's template arguments, stable across versions (it names
// generated files, cache entries and the NC_AOT_ATTENTION list).
inline int value_head_dim(const AttnKernelKey& k) {
  return k.head_dim_vo > 0 ? k.head_dim_vo : k.head_dim;
}
inline std::string attn_key_string(const AttnKernelKey& k) {
  static const char* kinds[] = {"decode", "prefill_causal", "prefill_none", "ragged_causal"};
  const std::string vo =
      k.kind == AttnKind::RaggedCausal ? "_vo" + std::to_string(value_head_dim(k)) : "";
  return std::string(kinds[int(k.kind)]) + "_hd" + std::to_string(k.head_dim) + vo + "_w" +
         (k.window ? "1" : "0") + "_sc" + (k.soft_cap ? "1" : "0") + "_bf16" +
         (k.kv_fp8 ? "_kvfp8" : "");
}

// Bumped whenever AttnKernelTable or the signatures below change.
// 2: PagedKV::fp8 and AttnIO::v_scale (FP8 pages). 3: ragged_run (RaggedCausal). 4: AttnIO::pdl.
constexpr int kAttnTableAbi = 4;
constexpr const char* kAttnEntrySymbol = "nc_attn_kernel_table";

struct AttnKernelTable {
  int abi = kAttnTableAbi;
  const char* key = "";  // attn_key_string of the configuration (a JIT object: the cache key)
  // Decode kinds: ws null sizes the workspaces (*float_bytes, *int_bytes), else plans into it.
  void (*decode_plan)(const PlanQuery& q, const PlanWorkspace* ws, PlanInfo* out,
                      size_t* float_bytes, size_t* int_bytes, cudaStream_t stream) = nullptr;
  void (*decode_run)(const PlanInfo& plan, const PlanWorkspace& ws, const PagedKV& kv,
                     const AttnIO& io, cudaStream_t stream) = nullptr;
  // Prefill kinds (planned with prefill_plan, which does not depend on the variant).
  void (*prefill_run)(const PlanInfo& plan, const PlanWorkspace& ws, const PagedKV& kv,
                      int32_t* qo_indptr, const AttnIO& io, cudaStream_t stream) = nullptr;
  // RaggedCausal (planned with prefill_plan, page_size 1 and head_dim_vo).
  void (*ragged_run)(const PlanInfo& plan, const PlanWorkspace& ws, const RaggedKV& kv,
                     int32_t* qo_indptr, const AttnIO& io, cudaStream_t stream) = nullptr;
};

using AttnEntryFn = const AttnKernelTable* (*)();

// The table of a configuration compiled into this binary, or null (attn.cu).
const AttnKernelTable* aot_attn_table(const AttnKernelKey& key);

}  // namespace nc::cuda

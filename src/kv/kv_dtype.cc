// The KV cache's element type (contract: kv/kv_dtype.h).
#include "kv/kv_dtype.h"

#include "core/error.h"

namespace nc {

KVCacheDType parse_kv_cache_dtype(std::string_view s) {
  if (s == "auto" || s.empty()) return KVCacheDType::Auto;
  if (s == "bf16") return KVCacheDType::BF16;
  if (s == "fp8" || s == "fp8_e4m3") return KVCacheDType::FP8;
  fail_as(ErrorKind::InvalidArgument, "kv cache dtype '{}': expected auto, bf16 or fp8", s);
}

std::string_view kv_cache_dtype_name(KVCacheDType t) {
  switch (t) {
    case KVCacheDType::Auto:
      return "auto";
    case KVCacheDType::BF16:
      return "bf16";
    case KVCacheDType::FP8:
      return "fp8";
  }
  return "?";
}

DType kv_page_dtype(KVCacheDType t, DType backend_dtype) {
  switch (t) {
    case KVCacheDType::Auto:
      return backend_dtype;
    case KVCacheDType::BF16:
      return DType::BF16;
    case KVCacheDType::FP8:
      return DType::F8E4M3;
  }
  return backend_dtype;
}

}  // namespace nc

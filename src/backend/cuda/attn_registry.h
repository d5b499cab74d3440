// AttnRegistry: the attention kernel table of any configuration (attn_kernels.h).
//
// get(key) returns, in this order: a table already looked up (kept for the registry's life), the
// table compiled ahead into this binary (plain bf16 pages, head_dim 64 and 128, plus the
// NC_AOT_ATTENTION keys; FP8 pages only through those), or a run-time compiled one: the JIT cache's
// object for the key (jit_cache.h; a hit) or one compiled now by nvcc (jit_compiler.h; logged with
// its seconds on stderr). Loaded objects are never unloaded (captured CUDA graphs may name their
// kernels).
//
// Without nvcc and without a cached object the lookup fails with nc::Error (Unsupported) naming
// the configuration, the cache folder and how to build it ahead. Thread-safe.
#pragma once
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "backend/cuda/attn_kernels.h"
#include "backend/cuda/jit_cache.h"
#include "backend/cuda/jit_compiler.h"

namespace nc::cuda_host {

struct JitOptions {
  std::string cache_dir;  // empty: JitCache::default_dir()
  // Tests: a given toolchain instead of the detected one (e.g. no nvcc).
  std::optional<JitToolchain> toolchain;
  // Tests: skip the tables compiled ahead (every key goes through the JIT).
  bool use_aot = true;
};

class AttnRegistry {
 public:
  explicit AttnRegistry(JitOptions options = {}, int device = 0);

  const cuda::AttnKernelTable& get(const cuda::AttnKernelKey& key);
  JitStats stats() const;
  const std::string& cache_dir() const { return cache_.dir(); }

 private:
  const cuda::AttnKernelTable* load_jit(const cuda::AttnKernelKey& key);

  mutable std::mutex mu_;
  JitOptions options_;
  int device_;
  std::optional<JitToolchain> toolchain_;  // detected on the first JIT lookup
  JitCache cache_;
  std::map<std::string, const cuda::AttnKernelTable*> tables_;
};

}  // namespace nc::cuda_host

// The attention kernel registry: tables compiled ahead, else run-time compiled (attn_registry.h).
#include "backend/cuda/attn_registry.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cstring>

#include "core/error.h"

namespace nc::cuda_host {
namespace {

// dlopen's the object and checks its entry and table; null (and closed) when it is not the
// object for `table_key`.
void* load_object(const std::string& path, const std::string& table_key) {
  void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) return nullptr;
  auto entry = reinterpret_cast<cuda::AttnEntryFn>(::dlsym(h, cuda::kAttnEntrySymbol));
  const cuda::AttnKernelTable* t = entry != nullptr ? entry() : nullptr;
  if (t == nullptr || t->abi != cuda::kAttnTableAbi || t->key == nullptr ||
      std::strcmp(t->key, table_key.c_str()) != 0) {
    ::dlclose(h);
    return nullptr;
  }
  return h;
}

}  // namespace

AttnRegistry::AttnRegistry(JitOptions options, int device)
    : options_(std::move(options)),
      device_(device),
      toolchain_(options_.toolchain),
      cache_(options_.cache_dir) {}

JitStats AttnRegistry::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cache_.stats();
}

const cuda::AttnKernelTable& AttnRegistry::get(const cuda::AttnKernelKey& key) {
  const std::string name = cuda::attn_key_string(key);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tables_.find(name);
  if (it != tables_.end()) return *it->second;
  const cuda::AttnKernelTable* t = options_.use_aot ? cuda::aot_attn_table(key) : nullptr;
  if (t == nullptr) t = load_jit(key);
  tables_[name] = t;
  return *t;
}

const cuda::AttnKernelTable* AttnRegistry::load_jit(const cuda::AttnKernelKey& key) {
  if (!toolchain_) toolchain_ = detect_toolchain(device_);
  const JitToolchain& tc = *toolchain_;
  const std::string name = cuda::attn_key_string(key);
  const std::string table_key = jit_cache_key(key, tc);
  auto build = [&](const std::string& out) {
    NC_CHECK_AS(ErrorKind::Unsupported, !tc.nvcc.empty(),
                "attention kernel {} is not compiled in and cannot be compiled at run time: no "
                "nvcc (set NC_NVCC or put the CUDA toolkit on PATH) and no cached object in {} "
                "(key: {}); build it ahead with cmake -DNC_AOT_ATTENTION={}",
                name, cache_.dir(), table_key, name);
    fmt::print(stderr, "nc: jit: compiling attention kernel {} for {} ...\n", name, tc.arch);
    jit_compile(tc, key, table_key, out);
  };
  auto load = [&](const std::string& path) { return load_object(path, table_key); };
  const JitCache::Entry e = cache_.get(table_key, build, load);
  if (e.compiled) {
    fmt::print(stderr, "nc: jit: compiled attention kernel {} in {:.1f} s ({})\n", name, e.seconds,
               e.path);
  } else {
    fmt::print(stderr, "nc: jit: attention kernel {} from the cache ({})\n", name, e.path);
  }
  auto entry = reinterpret_cast<cuda::AttnEntryFn>(::dlsym(e.handle, cuda::kAttnEntrySymbol));
  return entry();
}

}  // namespace nc::cuda_host

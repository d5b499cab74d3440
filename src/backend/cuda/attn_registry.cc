// The attention kernel registry: tables compiled ahead, else run-time compiled (attn_registry.h).
#include "backend/cuda/attn_registry.h"

#include <dlfcn.h>
#include <elf.h>
#include <fmt/format.h>

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <vector>

#include "core/error.h"

namespace nc::cuda_host {
namespace {

// Whether the file is a whole 64-bit ELF object: its section table and every segment lie inside
// the file. dlopen maps a truncated object and then dies of SIGBUS touching the missing part,
// so a damaged cache entry must be caught before.
bool elf_complete(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return false;
  const uint64_t size = uint64_t(in.tellg());
  Elf64_Ehdr eh{};
  in.seekg(0);
  if (size < sizeof eh || !in.read(reinterpret_cast<char*>(&eh), sizeof eh)) return false;
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_phentsize != sizeof(Elf64_Phdr))
    return false;
  if (eh.e_shoff + uint64_t(eh.e_shnum) * eh.e_shentsize > size) return false;
  if (eh.e_phoff + uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr) > size) return false;
  std::vector<Elf64_Phdr> ph(eh.e_phnum);
  in.seekg(std::streamoff(eh.e_phoff));
  if (!in.read(reinterpret_cast<char*>(ph.data()), std::streamsize(ph.size() * sizeof(Elf64_Phdr))))
    return false;
  for (const Elf64_Phdr& p : ph)
    if (p.p_offset + p.p_filesz > size) return false;
  return true;
}

// dlopen's the object and checks its entry and table; null (and closed) when it is not the
// object for `table_key`.
void* load_object(const std::string& path, const std::string& table_key) {
  if (!elf_complete(path)) return nullptr;
  // Opened through a fresh name: glibc hands back an already loaded object of the same name, so
  // after a rejected entry (which may stay mapped) was rebuilt, its path would give the stale one.
  // A rebuilt entry is a new file, hence a new object; a link to a loaded one is that object.
  static std::atomic<int> counter{0};
  const std::string alias =
      path + ".load." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  const bool linked = ::link(path.c_str(), alias.c_str()) == 0;
  void* h = ::dlopen((linked ? alias : path).c_str(), RTLD_NOW | RTLD_LOCAL);
  if (linked) ::unlink(alias.c_str());
  if (h == nullptr) {
    // Said here because the cache only learns "rejected" (e.g. a library version the object
    // needs and the process does not have).
    const char* why = ::dlerror();
    fmt::print(stderr, "nc: jit: {} does not load: {}\n", path, why ? why : "unknown reason");
    return nullptr;
  }
  auto entry = reinterpret_cast<cuda::AttnEntryFn>(::dlsym(h, cuda::kAttnEntrySymbol));
  const cuda::AttnKernelTable* t = entry != nullptr ? entry() : nullptr;
  if (t == nullptr || t->abi != cuda::kAttnTableAbi || t->key == nullptr ||
      std::strcmp(t->key, table_key.c_str()) != 0) {
    fmt::print(stderr, "nc: jit: {} is not the object for {}\n", path, table_key);
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

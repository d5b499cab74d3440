// The attention JIT's host side, without a GPU: key strings, the on-disk cache (hit, miss, corrupt
// entries, two builders of one key) with a fake compiler (a shell command that writes a file),
// and the error when neither nvcc nor a cached object is there.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "backend/cuda/attn_registry.h"
#include "core/error.h"

namespace nc::cuda_host {
namespace {

namespace fs = std::filesystem;
using cuda::AttnKernelKey;
using cuda::AttnKind;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A fresh folder under the system's temp dir, removed afterwards.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(fs::temp_directory_path() / (name + "." + std::to_string(::getpid()))) {
    fs::remove_all(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// The fake compiler: a shell command writing "object:<key>" to the output path.
JitCache::BuildFn fake_build(const std::string& key, std::atomic<int>* runs = nullptr,
                             int sleep_ms = 0) {
  return [=](const std::string& out) {
    if (runs != nullptr) ++*runs;
    if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    const std::string cmd = "printf '%s' 'object:" + key + "' > '" + out + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  };
}

// Accepts a file holding exactly "object:<key>" (the fake loader's "dlopen").
JitCache::LoadFn fake_load(const std::string& key) {
  static int token = 0;
  return [=](const std::string& path) -> void* {
    return slurp(path) == "object:" + key ? &token : nullptr;
  };
}

// Our headers: the bundle's copy on the GPU machine (NC_JIT_INCLUDE_DIR), else the source tree.
JitToolchain test_toolchain() {
  const char* bundle = std::getenv("NC_JIT_INCLUDE_DIR");
  const std::string root = bundle != nullptr ? std::string(bundle) : std::string(NC_SOURCE_DIR);
  JitToolchain tc;
  tc.nvcc_version = "13.0.88";
  tc.arch = "sm_90a";
  tc.src_dir = root + "/src";
  tc.flashinfer_dir = root + (bundle != nullptr ? "/flashinfer" : "/third_party/flashinfer");
  tc.flashinfer_version = "flashinfer-python==0.7.2.post1";
  return tc;
}

TEST(JitKey, NamesEveryTemplateArgumentAndVersion) {
  AttnKernelKey k{AttnKind::Decode, 256, false, true};
  EXPECT_EQ(cuda::attn_key_string(k), "decode_hd256_w0_sc1_bf16");
  EXPECT_EQ(cuda::attn_key_string({AttnKind::PrefillCausal, 96, true, false}),
            "prefill_causal_hd96_w1_sc0_bf16");
  EXPECT_EQ(cuda::attn_key_string({AttnKind::PrefillNone, 128, false, false}),
            "prefill_none_hd128_w0_sc0_bf16");
  const JitToolchain tc = test_toolchain();
  const std::string full = jit_cache_key(k, tc);
  for (const char* part : {"decode_hd256_w0_sc1_bf16", "nvcc=13.0.88", "arch=sm_90a",
                           "flashinfer=flashinfer-python==0.7.2.post1", "abi="}) {
    EXPECT_NE(full.find(part), std::string::npos) << part << " in " << full;
  }
  // Any change of toolchain or arch is another key (another file).
  JitToolchain other = tc;
  other.arch = "sm_100a";
  EXPECT_NE(jit_cache_key(k, other), full);
  other = tc;
  other.nvcc_version = "12.8.93";
  EXPECT_NE(jit_cache_key(k, other), full);
  EXPECT_NE(JitCache::file_stem(full), JitCache::file_stem(jit_cache_key(k, other)));
  EXPECT_EQ(JitCache::file_stem(full).size(), 16u);
  // The generated source instantiates the key's configuration behind the entry symbol.
  const std::string src = jit_source(k, full, cuda::kAttnEntrySymbol);
  for (const char* part : {"#define NC_ATTN_KIND 0", "#define NC_ATTN_HEAD_DIM 256",
                           "#define NC_ATTN_WINDOW false", "#define NC_ATTN_SOFT_CAP true",
                           "#define NC_ATTN_ENTRY nc_attn_kernel_table", "attn_jit_entry.cuh"}) {
    EXPECT_NE(src.find(part), std::string::npos) << part;
  }
}

TEST(JitCache, MissThenHitAcrossInstances) {
  TempDir dir("nc_jit_hit");
  const std::string key = "key one";
  std::atomic<int> runs{0};
  JitCache a(dir.str());
  JitCache::Entry e = a.get(key, fake_build(key, &runs), fake_load(key));
  EXPECT_TRUE(e.compiled);
  EXPECT_EQ(a.stats().compiles, 1);
  EXPECT_EQ(a.stats().hits, 0);
  EXPECT_EQ(slurp(dir.str() + "/" + JitCache::file_stem(key) + ".key"), key);
  // A second instance (another process's view) reads the file without building.
  JitCache b(dir.str());
  e = b.get(key, fake_build(key, &runs), fake_load(key));
  EXPECT_FALSE(e.compiled);
  EXPECT_EQ(b.stats().hits, 1);
  EXPECT_EQ(b.stats().compiles, 0);
  EXPECT_EQ(runs.load(), 1);
  // No temporary files are left behind.
  for (const auto& f : fs::directory_iterator(dir.str()))
    EXPECT_EQ(f.path().string().find(".tmp."), std::string::npos) << f.path();
}

TEST(JitCache, CorruptEntriesAreRebuilt) {
  TempDir dir("nc_jit_corrupt");
  const std::string key = "key two";
  const std::string base = dir.str() + "/" + JitCache::file_stem(key);
  std::atomic<int> runs{0};
  JitCache c(dir.str());
  c.get(key, fake_build(key, &runs), fake_load(key));
  // A truncated object (the loader rejects it).
  std::ofstream(base + ".so", std::ios::trunc) << "garbage";
  JitCache::Entry e = c.get(key, fake_build(key, &runs), fake_load(key));
  EXPECT_TRUE(e.compiled);
  EXPECT_EQ(slurp(base + ".so"), "object:" + key);
  // A stored key string that is not this key (a hash collision or a foreign file).
  std::ofstream(base + ".key", std::ios::trunc) << "another key";
  e = c.get(key, fake_build(key, &runs), fake_load(key));
  EXPECT_TRUE(e.compiled);
  EXPECT_EQ(slurp(base + ".key"), key);
  EXPECT_EQ(runs.load(), 3);
  EXPECT_EQ(c.stats().compiles, 3);
  // A build that fails leaves no entry and reports its error.
  const std::string bad = "key three";
  EXPECT_THROW(c.get(
                   bad, [](const std::string&) { fail("compiler exploded"); }, fake_load(bad)),
               Error);
  EXPECT_FALSE(fs::exists(dir.str() + "/" + JitCache::file_stem(bad) + ".so"));
}

TEST(JitCache, TwoBuildersOfOneKeyBuildOnce) {
  TempDir dir("nc_jit_race");
  const std::string key = "key four";
  std::atomic<int> runs{0};
  // Separate instances open the lock file separately, as two processes would.
  JitCache a(dir.str()), b(dir.str());
  JitCache::Entry ea, eb;
  std::thread ta([&] { ea = a.get(key, fake_build(key, &runs, 300), fake_load(key)); });
  std::thread tb([&] { eb = b.get(key, fake_build(key, &runs, 300), fake_load(key)); });
  ta.join();
  tb.join();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_NE(ea.compiled, eb.compiled);  // one built, the other found its entry
  EXPECT_EQ(a.stats().compiles + b.stats().compiles, 1);
  EXPECT_EQ(a.stats().hits + b.stats().hits, 1);
}

TEST(JitRegistry, WithoutNvccOrCacheNamesTheConfiguration) {
  TempDir dir("nc_jit_nonvcc");
  JitOptions opt;
  opt.cache_dir = dir.str();
  opt.toolchain = test_toolchain();  // nvcc empty: none found
  opt.use_aot = false;
  AttnRegistry reg(opt);
  try {
    reg.get({AttnKind::Decode, 256, false, false});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    const std::string msg = e.what();
    for (const char* part : {"decode_hd256_w0_sc0_bf16", "nvcc", "NC_AOT_ATTENTION", "cmake"})
      EXPECT_NE(msg.find(part), std::string::npos) << part << " in: " << msg;
    EXPECT_NE(msg.find(dir.str()), std::string::npos) << msg;
  }
  EXPECT_EQ(reg.stats().compiles, 0);
}

// Real objects (nvcc, no GPU needed): a truncated entry (dlopen would die of SIGBUS on it), a
// valid object of another key and a foreign key file are each detected and rebuilt in the same
// process. Compiles three times (~15-25 s each), so it runs only with NC_JIT_COMPILE_TESTS=1.
TEST(JitRegistry, DamagedObjectsAreRebuilt) {
  if (std::getenv("NC_JIT_COMPILE_TESTS") == nullptr) GTEST_SKIP() << "NC_JIT_COMPILE_TESTS unset";
  JitToolchain tc = test_toolchain();
  tc.nvcc = "/usr/local/cuda/bin/nvcc";
  if (const char* n = std::getenv("NC_NVCC")) tc.nvcc = n;
  ASSERT_TRUE(fs::exists(tc.nvcc)) << tc.nvcc;
  TempDir dir("nc_jit_damaged");
  JitOptions opt;
  opt.cache_dir = dir.str();
  opt.toolchain = tc;
  opt.use_aot = false;
  const AttnKernelKey a{AttnKind::Decode, 64, true, false}, b{AttnKind::Decode, 64, false, true};
  const std::string so_a = dir.str() + "/" + JitCache::file_stem(jit_cache_key(a, tc)) + ".so";
  const std::string so_b = dir.str() + "/" + JitCache::file_stem(jit_cache_key(b, tc)) + ".so";
  {
    AttnRegistry reg(opt);
    reg.get(a);
    reg.get(b);
    EXPECT_EQ(reg.stats().compiles, 2);
  }
  // Damage arrives as new files (as from another process): this process still maps the objects
  // it loaded, and rewriting a mapped file in place would pull the pages from under it.
  auto replace = [](const std::string& path, const std::string& bytes) {
    std::ofstream(path + ".new", std::ios::binary) << bytes;
    fs::rename(path + ".new", path);
  };
  const std::string whole = slurp(so_a);
  replace(so_a, whole.substr(0, whole.size() / 3));
  AttnRegistry r1(opt);
  EXPECT_NE(r1.get(a).decode_run, nullptr);
  EXPECT_EQ(r1.stats().compiles, 1);
  // b's object under a's name: a valid ELF whose table names another key.
  replace(so_a, slurp(so_b));
  AttnRegistry r2(opt);
  const cuda::AttnKernelTable& t = r2.get(a);
  EXPECT_EQ(r2.stats().compiles, 1);
  EXPECT_EQ(std::string(t.key), jit_cache_key(a, tc));
  AttnRegistry r3(opt);
  r3.get(a);
  r3.get(b);
  EXPECT_EQ(r3.stats().hits, 2);
  EXPECT_EQ(r3.stats().compiles, 0);
}

}  // namespace
}  // namespace nc::cuda_host

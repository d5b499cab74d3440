// The on-disk cache of run-time compiled objects (jit_cache.h).
#include "backend/cuda/jit_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace nc::cuda_host {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A unique name in the cache folder for this process and call (renamed into place later).
std::string temp_path(const std::string& final_path) {
  static std::atomic<int> counter{0};
  return final_path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

// Holds an exclusive flock on a lock file for its lifetime.
class FileLock {
 public:
  explicit FileLock(const std::string& path) : fd_(::open(path.c_str(), O_RDWR | O_CREAT, 0644)) {
    NC_CHECK(fd_ >= 0, "jit cache: cannot open lock file {}", path);
    while (::flock(fd_, LOCK_EX) != 0) {
      NC_CHECK(errno == EINTR, "jit cache: cannot lock {}", path);
    }
  }
  ~FileLock() { ::close(fd_); }  // closing releases the lock
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
};

}  // namespace

JitCache::JitCache(std::string dir) : dir_(dir.empty() ? default_dir() : std::move(dir)) {}

std::string JitCache::default_dir() {
  if (const char* d = std::getenv("NC_JIT_CACHE"); d != nullptr && *d != 0) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != 0)
    return std::string(x) + "/nanocascade/jit";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "/tmp") + "/.cache/nanocascade/jit";
}

std::string JitCache::file_stem(const std::string& key) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

void* JitCache::try_load(const std::string& key, const std::string& stem,
                         const LoadFn& load) const {
  const std::string base = dir_ + "/" + stem;
  if (!fs::exists(base + ".so") || read_file(base + ".key") != key) return nullptr;
  return load(base + ".so");
}

JitCache::Entry JitCache::get(const std::string& key, const BuildFn& build, const LoadFn& load) {
  const std::string stem = file_stem(key);
  const std::string base = dir_ + "/" + stem;
  Entry e;
  e.path = base + ".so";
  if ((e.handle = try_load(key, stem, load)) != nullptr) {
    ++stats_.hits;
    return e;
  }
  std::error_code ec;
  fs::create_directories(dir_, ec);
  NC_CHECK(fs::is_directory(dir_), "jit cache: cannot create folder {}: {}", dir_, ec.message());
  FileLock lock(base + ".lock");
  // Another process may have built it while we waited for the lock.
  if ((e.handle = try_load(key, stem, load)) != nullptr) {
    ++stats_.hits;
    return e;
  }
  fs::remove(e.path, ec);  // missing, or corrupt: rebuilt below
  fs::remove(base + ".key", ec);
  const std::string tmp = temp_path(e.path);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    build(tmp);
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  NC_CHECK(fs::exists(tmp), "jit cache: building {} wrote no file", key);
  const std::string key_tmp = temp_path(base + ".key");
  {
    std::ofstream out(key_tmp, std::ios::binary);
    out << key;
    NC_CHECK(out.good(), "jit cache: cannot write {}", key_tmp);
  }
  fs::rename(key_tmp, base + ".key");
  fs::rename(tmp, e.path);
  e.compiled = true;
  ++stats_.compiles;
  stats_.compile_seconds += e.seconds;
  e.handle = try_load(key, stem, load);
  NC_CHECK(e.handle != nullptr, "jit cache: the object just built for {} does not load ({})", key,
           e.path);
  return e;
}

}  // namespace nc::cuda_host

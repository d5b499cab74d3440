// The tuned GEMM choices' file (gemm_tune_cache.h).
#include "backend/cuda/gemm_tune_cache.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace nc::cuda_host {
namespace {

namespace fs = std::filesystem;

std::string cache_dir() {
  if (const char* d = std::getenv("NC_GEMM_CACHE"); d != nullptr && *d != 0)
    return std::string(d) == "off" ? std::string() : std::string(d);
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != 0)
    return std::string(x) + "/nanocascade/gemm";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "/tmp") + "/.cache/nanocascade/gemm";
}

// "<device name>_drv<driver>_lt<cuBLASLt>.tsv", the name's odd characters as '_'.
std::string file_name(int device) {
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, device);
  int driver = 0;
  cudaDriverGetVersion(&driver);
  std::string name = prop.name;
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') c = '_';
  return name + "_drv" + std::to_string(driver) + "_lt" + std::to_string(cublasLtGetVersion()) +
         ".tsv";
}

}  // namespace

GemmTuneCache::GemmTuneCache(int device) {
  const std::string dir = cache_dir();
  if (dir.empty()) return;
  path_ = dir + "/" + file_name(device);
  std::ifstream in(path_);
  std::string line;
  while (std::getline(in, line)) {
    const size_t tab = line.find('\t');
    if (tab != std::string::npos && tab > 0 && tab + 1 < line.size())
      entries_[line.substr(0, tab)] = line.substr(tab + 1);
  }
}

std::optional<std::string> GemmTuneCache::lookup(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

void GemmTuneCache::store(const std::string& key, const std::string& choice) {
  entries_[key] = choice;
  if (path_.empty()) return;
  std::error_code ec;
  fs::create_directories(fs::path(path_).parent_path(), ec);
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return;
  const std::string line = key + "\t" + choice + "\n";
  [[maybe_unused]] const ssize_t n = ::write(fd, line.data(), line.size());
  ::close(fd);
}

}  // namespace nc::cuda_host

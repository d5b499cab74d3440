// The file of tuned GEMM choices (CublasLtGemm, cuda_gemm.h), so that a later process on the same
// GPU does not time the candidates again.
//
// One file per device name, driver version and cuBLASLt version, in NC_GEMM_CACHE (a folder;
// "off" disables the file), else $XDG_CACHE_HOME/nanocascade/gemm, else
// ~/.cache/nanocascade/gemm. Each line is "<shape key>\t<candidate name>"; a later line for the
// same key wins. Lines are appended with one write each (O_APPEND), so concurrent processes do
// not interleave them. The file is an optimisation: when it cannot be read or written, the
// choices stay in memory only (nothing throws).
#pragma once
#include <map>
#include <optional>
#include <string>

namespace nc::cuda_host {

class GemmTuneCache {
 public:
  explicit GemmTuneCache(int device);

  std::optional<std::string> lookup(const std::string& key) const;
  void store(const std::string& key, const std::string& choice);
  // The file's path; empty when the file is disabled.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::map<std::string, std::string> entries_;
};

}  // namespace nc::cuda_host

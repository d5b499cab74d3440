// JitCache: run-time compiled objects on disk, one file per key, shared by processes.
//
// An entry is <dir>/<stem>.so plus <dir>/<stem>.key holding the full key string, where stem is
// a 64-bit hash of the key (16 hex digits). get() returns a loaded entry:
//   - a hit: the entry exists, its stored key equals the key and `load` accepts the file;
//   - otherwise, under an exclusive flock on <dir>/<stem>.lock (so two processes build a key
//     once; the second finds the first one's entry when it gets the lock), an entry that exists
//     but fails (stored key differs, `load` rejects it) is deleted, `build` writes a temporary
//     file in the folder, which is renamed into place (atomic: readers never see half a file)
//     after the key file, and loaded.
// Counters: hits, compiles and the seconds spent in `build`. The folder is created on demand.
// Thread-safe per instance only through the caller (the registry holds a mutex).
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace nc::cuda_host {

struct JitStats {
  int64_t compiles = 0;
  int64_t hits = 0;
  double compile_seconds = 0.0;
};

class JitCache {
 public:
  // `dir` empty: default_dir().
  explicit JitCache(std::string dir = {});

  // Writes the object to the given path (throws on failure).
  using BuildFn = std::function<void(const std::string& out_path)>;
  // Loads the file at path; null (after releasing what it opened) when the file is not a valid
  // object for the key.
  using LoadFn = std::function<void*(const std::string& path)>;
  struct Entry {
    void* handle = nullptr;  // what `load` returned
    std::string path;
    bool compiled = false;  // built by this call (else a hit)
    double seconds = 0.0;   // build time when compiled
  };
  // Throws nc::Error when the freshly built object does not load, or what `build` throws.
  Entry get(const std::string& key, const BuildFn& build, const LoadFn& load);

  const std::string& dir() const { return dir_; }
  const JitStats& stats() const { return stats_; }

  // NC_JIT_CACHE, else $XDG_CACHE_HOME/nanocascade/jit, else $HOME/.cache/nanocascade/jit.
  static std::string default_dir();
  // The file stem of a key: FNV-1a 64 of the key string, as 16 lowercase hex digits.
  static std::string file_stem(const std::string& key);

 private:
  void* try_load(const std::string& key, const std::string& stem, const LoadFn& load) const;

  std::string dir_;
  JitStats stats_;
};

}  // namespace nc::cuda_host

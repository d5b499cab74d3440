// Helpers shared by the safetensors and model-loader tests.
#pragma once
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"

namespace nc::loader_test {

inline const std::string kDir = std::string(NC_FIXTURES_DIR) + "/loader/";

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  if (!f.good()) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(f);
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A scratch folder (empty, or a copy of a fixture folder) that a test may break; removed at the
// end of the scope.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& from = "") {
    namespace fs = std::filesystem;
    path_ = fs::temp_directory_path() /
            ("nc_loader_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::remove_all(path_);
    if (from.empty()) {
      fs::create_directories(path_);
    } else {
      fs::copy(from, path_, fs::copy_options::recursive);
    }
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name, std::ios::binary) << text;
  }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

// Runs f, expects an nc::Error whose message contains every needle.
template <typename F>
inline void expect_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const std::string& n : needles) {
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << "message '" << e.what() << "' lacks '" << n << "'";
    }
  }
}

// expect_error, and the error's kind (what the server answers it with) is `kind`.
template <typename F>
inline void expect_error(F&& f, std::initializer_list<std::string> needles, ErrorKind kind) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(error_kind_name(e.kind()), std::string(error_kind_name(kind))) << e.what();
    for (const std::string& n : needles) {
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << "message '" << e.what() << "' lacks '" << n << "'";
    }
  }
}

}  // namespace nc::loader_test

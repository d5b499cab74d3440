// llama.cpp's tokenizer test vectors: X.gguf.inp holds cases, each followed by
// "\n__ggml_vocab_test__\n"; X.gguf.out one line of space-separated ids per case.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace nc::test {

inline std::string read_whole_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};

// The cases of the vocabulary file `gguf` (its .inp and .out files beside it).
inline std::vector<VocabCase> load_vocab_cases(const std::string& gguf) {
  const std::string inp = read_whole_file(gguf + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<VocabCase> cases;
  for (size_t pos = 0; pos < inp.size();) {
    const size_t e = inp.find(sep, pos);
    if (e == std::string::npos) break;
    cases.push_back({inp.substr(pos, e - pos), {}});
    pos = e + sep.size();
  }
  std::istringstream out(read_whole_file(gguf + ".out"));
  std::string line;
  for (VocabCase& c : cases) {
    EXPECT_TRUE(std::getline(out, line)) << gguf << ": fewer .out lines than cases";
    std::istringstream ls(line);
    for (int32_t id; ls >> id;) c.ids.push_back(id);
  }
  return cases;
}

}  // namespace nc::test

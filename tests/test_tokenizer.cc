// Tokenizer tests against references written elsewhere: llama.cpp's vocabulary test vectors
// (/work/shared/testdata/tokenizer) and Hugging Face transformers' tokenization of SmolLM2
// (tests/fixtures/tokenizer, made by tools/make_tokenizer_fixtures.py).
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "model/gguf.h"

namespace nc {
namespace {

const std::string kTestdata = NC_TESTDATA_DIR "/tokenizer/";
const std::string kFixtures = NC_FIXTURES_DIR "/tokenizer/";
const std::string kSmolLM2 = NC_DEFAULT_MODEL_DIR "/SmolLM2-135M-Instruct.Q4_1.gguf";

std::string read_file(const std::string& path) {
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

// X.gguf.inp: cases each followed by "\n__ggml_vocab_test__\n"; X.gguf.out: one line of ids
// per case.
std::vector<VocabCase> load_cases(const std::string& vocab) {
  const std::string inp = read_file(kTestdata + vocab + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<VocabCase> cases;
  for (size_t pos = 0; pos < inp.size();) {
    const size_t e = inp.find(sep, pos);
    if (e == std::string::npos) break;
    cases.push_back({inp.substr(pos, e - pos), {}});
    pos = e + sep.size();
  }
  std::istringstream out(read_file(kTestdata + vocab + ".out"));
  std::string line;
  for (VocabCase& c : cases) {
    EXPECT_TRUE(std::getline(out, line)) << vocab << ": fewer .out lines than cases";
    std::istringstream ls(line);
    for (int32_t id; ls >> id;) c.ids.push_back(id);
  }
  return cases;
}

class VocabTest : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabTest, EncodesEveryCaseExactlyAndRoundTrips) {
  const std::string vocab = GetParam();
  const GgufFile gguf = GgufFile::open(kTestdata + vocab);
  const auto tok = Tokenizer::from_gguf(gguf);
  const auto cases = load_cases(vocab);
  ASSERT_EQ(cases.size(), 46u);
  int passed = 0;
  for (const VocabCase& c : cases) {
    const std::vector<int32_t> ids = tok->encode(c.text, /*add_bos=*/false, /*parse_special=*/false);
    EXPECT_EQ(ids, c.ids) << vocab << " text: '" << c.text << "'";
    EXPECT_EQ(tok->decode(ids), c.text) << vocab;
    passed += ids == c.ids;
  }
  EXPECT_EQ(passed, 46);
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, VocabTest,
                         ::testing::Values("ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-bpe.gguf",
                                           "ggml-vocab-qwen2.gguf", "ggml-vocab-starcoder.gguf",
                                           "ggml-vocab-llama-spm.gguf"));

}  // namespace
}  // namespace nc

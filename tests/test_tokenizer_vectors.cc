// llama.cpp's own vocabulary test vectors: every models/ggml-vocab-*.gguf that ships .inp/.out
// files in the llama-cpp-python sdist (unpacked by tools/setup.sh into third_party/llama-vocab).
// The .out ids were written by Hugging Face tokenizers for each model's tokenizer.json, so an
// exact match here is a match with the model's own tokenizer. Vocabularies of a model type the
// engine does not implement are listed with the reason and must fail to load with a clear
// error; a vector file this test does not know about fails (it must be classified).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

#include "vocab_cases.h"

namespace nc {
namespace {

namespace fs = std::filesystem;

const std::string kVocabDir = NC_FIXTURES_DIR "/../../third_party/llama-vocab/";

// Every ggml-vocab-*.gguf of the sdist: "" = supported, else why it is skipped.
const std::map<std::string, std::string> kVocabs = {
    {"aquila", ""},  // no .inp/.out: loaded only
    {"baichuan", ""},
    {"bert-bge", "tokenizer.ggml.model 'bert' (WordPiece) is not implemented"},
    {"command-r", ""},
    {"deepseek-coder", ""},
    {"deepseek-llm", ""},
    {"falcon", ""},
    {"gemma-4", ""},
    {"gpt-2", ""},
    {"gpt-neox", ""},
    {"llama-bpe", ""},
    {"llama-spm", ""},
    {"mpt", ""},
    {"nomic-bert-moe", "tokenizer.ggml.model 't5' (Unigram) is not implemented"},
    {"phi-3", ""},
    {"qwen2", ""},
    {"qwen35", ""},
    {"refact", ""},
    {"starcoder", ""},
};

using test::VocabCase;

std::vector<VocabCase> load_cases(const fs::path& gguf) {
  return test::load_vocab_cases(gguf.string());
}

std::string name_of(const fs::path& gguf) {
  const std::string f = gguf.filename().string();  // ggml-vocab-NAME.gguf
  return f.substr(11, f.size() - 11 - 5);
}

std::vector<fs::path> vocab_files() {
  std::vector<fs::path> out;
  if (!fs::is_directory(kVocabDir)) return out;
  for (const auto& e : fs::directory_iterator(kVocabDir)) {
    const std::string f = e.path().filename().string();
    if (f.rfind("ggml-vocab-", 0) == 0 && e.path().extension() == ".gguf") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string ids_str(const std::vector<int32_t>& ids) {
  std::ostringstream s;
  for (size_t i = 0; i < ids.size(); ++i) s << (i ? " " : "") << ids[i];
  return s.str();
}

TEST(TokenizerVectors, EveryShippedVocabularyIsClassified) {
  const std::vector<fs::path> files = vocab_files();
  if (files.empty())
    GTEST_SKIP() << "llama.cpp's vocabulary vectors are absent from " << kVocabDir
                 << ": run tools/setup.sh (it unpacks them from the llama-cpp-python sdist)";
  for (const fs::path& gguf : files)
    EXPECT_TRUE(kVocabs.count(name_of(gguf)))
        << "unclassified vocabulary " << gguf << ": add it to kVocabs (supported, or why not)";
}

class TokenizerVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerVectors, EncodesExactly) {
  const std::string name = GetParam();
  const fs::path gguf = kVocabDir + "ggml-vocab-" + name + ".gguf";
  if (!fs::exists(gguf))
    GTEST_SKIP() << gguf << " is absent: run tools/setup.sh (it unpacks llama.cpp's vocabulary "
                 << "vectors from the llama-cpp-python sdist)";
  const std::string& skip_reason = kVocabs.at(name);
  if (!skip_reason.empty()) {
    // Not implemented: loading must say so, never tokenize wrongly.
    try {
      Tokenizer::from_gguf(GgufFile::open(gguf.string()));
      ADD_FAILURE() << name << " loaded although its model type is listed as unsupported";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Unsupported) << e.what();
    }
    GTEST_SKIP() << "ggml-vocab-" << name << ": " << skip_reason;
  }
  const auto tok = Tokenizer::from_gguf(GgufFile::open(gguf.string()));
  if (!fs::exists(gguf.string() + ".inp")) return;  // no vectors ship: loading is the check
  const std::vector<VocabCase> cases = load_cases(gguf);
  ASSERT_GE(cases.size(), 40u);
  size_t passed = 0;
  for (const VocabCase& c : cases) {
    const std::vector<int32_t> ids = tok->encode(c.text, /*add_bos=*/false, false);
    EXPECT_EQ(ids_str(ids), ids_str(c.ids)) << name << " text: '" << c.text << "'";
    EXPECT_EQ(tok->decode(ids), c.text) << name << ": round trip";
    passed += ids == c.ids;
  }
  EXPECT_EQ(passed, cases.size());
}

std::vector<std::string> vocab_names() {
  std::vector<std::string> out;
  for (const auto& [name, reason] : kVocabs) out.push_back(name);
  return out;
}

std::string test_name(const ::testing::TestParamInfo<std::string>& p) {
  std::string n = p.param;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

INSTANTIATE_TEST_SUITE_P(Llama, TokenizerVectors, ::testing::ValuesIn(vocab_names()), test_name);

}  // namespace
}  // namespace nc

// Gemma's vocabulary against Hugging Face tokenizers: tests/data/gemma_tokenizer_golden.json
// holds ids that `tokenizers` gives texts with Gemma 4's vocabulary built as Gemma's
// tokenizer.json defines it (tools/make_gemma_tokenizer_golden.py); the engine loads the same
// vocabulary from ggml-vocab-gemma-4.gguf (third_party/llama-vocab, unpacked by tools/setup.sh).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

namespace nc {
namespace {

const std::string kGemmaGguf =
    NC_FIXTURES_DIR "/../../third_party/llama-vocab/ggml-vocab-gemma-4.gguf";
const std::string kGolden = NC_FIXTURES_DIR "/../data/gemma_tokenizer_golden.json";

nlohmann::json golden() {
  std::ifstream f(kGolden, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return nlohmann::json::parse(ss.str());
}

// Loaded once: building the 262,144-token vocabulary takes about a second.
const Tokenizer* gemma() {
  static const std::unique_ptr<Tokenizer> tok = Tokenizer::from_gguf(GgufFile::open(kGemmaGguf));
  return tok.get();
}

TEST(TokenizerGemma, MatchesHuggingFaceTokenizers) {
  if (!std::filesystem::exists(kGemmaGguf))
    GTEST_SKIP() << kGemmaGguf << " is absent: run tools/setup.sh";
  const Tokenizer* tok = gemma();
  EXPECT_EQ(tok->kind(), TokenizerKind::kUtf8Bpe);
  EXPECT_TRUE(tok->add_bos_default());  // Gemma always starts with <bos>
  EXPECT_EQ(tok->bos_id(), 2);
  const nlohmann::json g = golden();
  ASSERT_GE(g["texts"].size(), 15u);
  for (const auto& c : g["texts"]) {
    const std::string text = c["text"];
    const std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
    // HF matches added tokens in all text: parse_special is its reading.
    const std::vector<int32_t> ids = tok->encode(text, /*add_bos=*/false, /*parse_special=*/true);
    EXPECT_EQ(ids, want) << "text: '" << text << "'";
    EXPECT_EQ(tok->decode(ids), text) << "round trip of '" << text << "'";
  }
}

TEST(TokenizerGemma, BytesOutsideTheVocabularyFallBackToByteTokens) {
  if (!std::filesystem::exists(kGemmaGguf))
    GTEST_SKIP() << kGemmaGguf << " is absent: run tools/setup.sh";
  const Tokenizer* tok = gemma();
  // An invalid UTF-8 byte has no character token: it becomes <0xFF>.
  const std::vector<int32_t> ids = tok->encode("a\xFF", false, false);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(tok->token_type(ids.back()), TokenType::kByte);
  EXPECT_EQ(tok->decode(ids), "a\xFF");
}

}  // namespace
}  // namespace nc

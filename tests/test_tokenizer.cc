// Tokenizer tests against references written elsewhere: llama.cpp's vocabulary test vectors
// (/work/shared/testdata/tokenizer) and Hugging Face transformers' tokenization of SmolLM2
// (tests/fixtures/tokenizer, made by tools/make_tokenizer_fixtures.py).
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/unicode.h"

#include "vocab_cases.h"

namespace nc {
namespace {

const std::string kTestdata = NC_TESTDATA_DIR "/tokenizer/";
const std::string kFixtures = NC_FIXTURES_DIR "/tokenizer/";
const std::string kSmolLM2 = NC_DEFAULT_MODEL_DIR "/SmolLM2-135M-Instruct.Q4_1.gguf";

using test::VocabCase;

std::vector<VocabCase> load_cases(const std::string& vocab) {
  return test::load_vocab_cases(kTestdata + vocab);
}

// Tokenizers are loaded once per test binary: the big vocabularies take a while to build.
const Tokenizer& load(const std::string& path) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[path];
  if (!t) t = Tokenizer::from_gguf(GgufFile::open(path));
  return *t;
}
const Tokenizer& vocab(const std::string& name) {
  return load(kTestdata + "ggml-vocab-" + name + ".gguf");
}
const Tokenizer& smollm2() {
  return load(kSmolLM2);
}

nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(test::read_whole_file(path));
}

// True when s is valid UTF-8 made of whole characters.
bool whole_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<uint8_t>(s[i]);
    const size_t n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<uint8_t>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

class VocabTest : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabTest, EncodesEveryCaseExactlyAndRoundTrips) {
  const std::string vocab = GetParam();
  const Tokenizer* tok = &load(kTestdata + vocab);
  const auto cases = load_cases(vocab);
  ASSERT_EQ(cases.size(), 46u);
  int passed = 0;
  for (const VocabCase& c : cases) {
    const std::vector<int32_t> ids =
        tok->encode(c.text, /*add_bos=*/false, /*parse_special=*/false);
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

TEST(Tokenizer, FamiliesAndDefaults) {
  EXPECT_EQ(vocab("gpt-2").kind(), TokenizerKind::kByteLevelBpe);
  EXPECT_EQ(vocab("llama-spm").kind(), TokenizerKind::kSentencePieceBpe);
  EXPECT_EQ(vocab("qwen2").vocab_size(), 151936);
  // add_bos: the GGUF key when present, else the family's default.
  EXPECT_TRUE(vocab("llama-spm").add_bos_default());  // key: true
  EXPECT_TRUE(vocab("llama-bpe").add_bos_default());  // no key: Llama-3 adds <|begin_of_text|>
  EXPECT_FALSE(vocab("gpt-2").add_bos_default());
  EXPECT_FALSE(smollm2().add_bos_default());  // key: false
  EXPECT_EQ(smollm2().bos_id(), 1);
  EXPECT_EQ(smollm2().eos_id(), 2);
  EXPECT_EQ(vocab("llama-bpe").bos_id(), 128000);
  const std::vector<int32_t> bos_hello = vocab("llama-spm").encode("Hello", true, false);
  EXPECT_EQ(bos_hello, (std::vector<int32_t>{1, 15043}));
  EXPECT_EQ(vocab("llama-spm").decode(bos_hello, /*skip_special=*/true), "Hello");
  EXPECT_EQ(vocab("llama-spm").decode(bos_hello), "<s>Hello");
  EXPECT_EQ(vocab("gpt-2").encode("x", true, false).front(), 50256);  // <|endoftext|>
}

TEST(Tokenizer, EosIdsIncludeEndOfTurnTokensTheTemplateUses) {
  EXPECT_EQ(smollm2().eos_ids(), (std::vector<int32_t>{2}));  // <|im_end|> is also eos
  // Qwen2: eos <|endoftext|>, and its ChatML template closes turns with <|im_end|>.
  EXPECT_EQ(vocab("qwen2").eos_ids(), (std::vector<int32_t>{151643, 151645}));
  EXPECT_TRUE(vocab("qwen2").is_eos(151645));
  EXPECT_EQ(vocab("llama-bpe").eos_ids(), (std::vector<int32_t>{128001}));  // no template
}

TEST(Tokenizer, UnknownPreTokenizerIsAnError) {
  try {
    Tokenizer::pre_regexes_for("no-such-family");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-family"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("llama-bpe"), std::string::npos) << e.what();
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported) << e.what();
  }
  EXPECT_EQ(Tokenizer::pre_regexes_for("smollm").size(), 2u);
}

TEST(Tokenizer, SpecialTokensParseOnlyWhenAsked) {
  const Tokenizer& t = smollm2();
  const std::string text = "<|im_start|>user\nHi<|im_end|>";
  const std::vector<int32_t> ids = t.encode(text, false, /*parse_special=*/true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(t.decode(ids), text);
  EXPECT_EQ(t.decode(ids, /*skip_special=*/true), "user\nHi");
  const std::vector<int32_t> plain = t.encode(text, false, /*parse_special=*/false);
  for (int32_t id : plain) EXPECT_NE(t.token_type(id), TokenType::kControl) << id;
  EXPECT_GT(plain.size(), ids.size());
  EXPECT_EQ(t.decode(plain), text);

  const Tokenizer& l3 = vocab("llama-bpe");
  const std::vector<int32_t> l3ids =
      l3.encode("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", true, true);
  EXPECT_EQ(l3ids.front(), 128000);
  EXPECT_EQ(l3ids[1], 128006);
  EXPECT_EQ(l3ids.back(), 128009);
}

TEST(Tokenizer, BadIdsAreErrorsNamingTheId) {
  const Tokenizer& t = smollm2();
  for (int32_t bad : {-1, 49152, 1 << 30}) {
    try {
      t.decode({5, bad});
      FAIL() << "expected an error for " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::to_string(bad)), std::string::npos) << e.what();
    }
    EXPECT_THROW(t.token_piece(bad), Error);
    IncrementalDecoder dec(t);
    EXPECT_THROW(dec.feed(bad), Error);
  }
}

// Texts whose characters span several tokens (byte-level pieces, <0xNN> fallback bytes).
const char* const kMultiByteTexts[] = {
    "Emoji 🦙🚀👩‍👩‍👧 and CJK 日本語のテキスト, 鑫 龘 𠜎 — done",
    "ied 4 ½ months Äpfel 🇫🇷✅",
};

TEST(Tokenizer, IncrementalDecoderEmitsWholeCharactersOnly) {
  for (const std::string name : {"gpt-2", "llama-bpe", "qwen2", "starcoder", "llama-spm"}) {
    const Tokenizer& t = vocab(name);
    for (const std::string text : kMultiByteTexts) {
      const std::vector<int32_t> ids = t.encode(text, false, false);
      int split_chars = 0;  // tokens whose bytes end inside a character
      for (int32_t id : ids) split_chars += !whole_utf8(t.token_piece(id));
      EXPECT_GT(split_chars, 0) << name << ": the test needs characters split across tokens";
      IncrementalDecoder dec(t);
      std::string all;
      for (int32_t id : ids) {
        const std::string part = dec.feed(id);
        EXPECT_TRUE(whole_utf8(part)) << name << " emitted a partial character";
        all += part;
      }
      all += dec.flush();
      EXPECT_EQ(all, t.decode(ids)) << name;
      EXPECT_EQ(all, text) << name;
    }
  }
}

TEST(Tokenizer, IncrementalDecoderFlushesIncompleteBytes) {
  const Tokenizer& t = vocab("llama-spm");
  // <0xE6> <0x97> alone: the first two bytes of a three-byte character.
  IncrementalDecoder dec(t);
  EXPECT_EQ(dec.feed(3 + 0xE6), "");
  EXPECT_EQ(dec.feed(3 + 0x97), "");
  EXPECT_EQ(dec.flush(), "\xE6\x97");
  EXPECT_EQ(dec.feed(3 + 0x41), "A");
  EXPECT_EQ(utf8_complete_prefix("ab\xF0\x9F\xA6"), 2u);
  EXPECT_EQ(utf8_complete_prefix("ab\xF0\x9F\xA6\x99"), 6u);
  EXPECT_EQ(utf8_complete_prefix("ab\x80"), 3u);  // a stray continuation byte is not held
}

// Any bytes, valid UTF-8 or not, encode to tokens that decode back to them.
TEST(Tokenizer, ArbitraryBytesRoundTrip) {
  uint32_t state = 12345;
  auto next = [&] {
    state = state * 1664525u + 1013904223u;
    return static_cast<char>(state >> 24);
  };
  for (const std::string name : {"gpt-2", "llama-bpe", "qwen2", "starcoder", "llama-spm"}) {
    const Tokenizer& t = vocab(name);
    for (int round = 0; round < 20; ++round) {
      std::string text;
      for (int i = 0; i < 64; ++i) text += next();
      text += "\xF0\x9F";  // ends inside a character
      for (bool special : {false, true}) {
        // StarCoder's vocabulary has no tokens for bytes that never occur in UTF-8; they drop.
        std::string want;
        for (char c : text) {
          const bool has = t.kind() == TokenizerKind::kSentencePieceBpe ||
                           t.token_id(unicode::byte_to_utf8(static_cast<uint8_t>(c))) >= 0;
          if (has) want += c;
        }
        const std::vector<int32_t> ids = t.encode(text, false, special);
        EXPECT_EQ(t.decode(ids), want) << name;
      }
    }
  }
}

// transformers' tokenization of SmolLM2, loaded from the same GGUF.
TEST(Tokenizer, SmolLM2MatchesTransformers) {
  const nlohmann::json fx = read_json(kFixtures + "smollm2_encodings.json");
  ASSERT_GE(fx["cases"].size(), 8u);
  for (const auto& c : fx["cases"]) {
    const std::string text = c["text"];
    const std::vector<int32_t> want = c["ids"];
    // transformers always splits out special tokens.
    const std::vector<int32_t> ids = smollm2().encode(text, false, /*parse_special=*/true);
    EXPECT_EQ(ids, want) << text;
    EXPECT_EQ(smollm2().decode(ids), text);
  }
}

// A truncated SmolLM2 tokenizer.json, against the `tokenizers` library's encoding of it.
TEST(Tokenizer, HfJsonMatchesTokenizersLibrary) {
  const std::string dir = kFixtures + "smollm2_small";
  const auto tok = Tokenizer::from_hf_json(dir);
  const nlohmann::json fx = read_json(dir + "/expected.json");
  for (const auto& c : fx["cases"]) {
    const std::string text = c["text"];
    const std::vector<int32_t> want = c["ids"];
    EXPECT_EQ(tok->encode(text, false, true), want) << text;
    EXPECT_EQ(tok->decode(want), text);
  }
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_FALSE(tok->add_bos_default());
  EXPECT_EQ(tok->chat_template(), smollm2().chat_template());
  EXPECT_EQ(tok->eos_ids(), smollm2().eos_ids());
  // Given the file instead of the directory.
  EXPECT_EQ(Tokenizer::from_hf_json(dir + "/tokenizer.json")->vocab_size(), tok->vocab_size());
}

TEST(Tokenizer, HfJsonErrors) {
  EXPECT_THROW(Tokenizer::from_hf_json(kFixtures + "no-such-dir"), Error);
  EXPECT_THROW(Tokenizer::from_hf_json(kFixtures + "smollm2_encodings.json"), Error);
  // A missing file is NotFound; a JSON file that is not a tokenizer is InvalidArgument.
  auto kind_of = [](const std::string& path) {
    try {
      Tokenizer::from_hf_json(path);
    } catch (const Error& e) {
      return std::string(error_kind_name(e.kind()));
    }
    return std::string("no error");
  };
  EXPECT_EQ(kind_of(kFixtures + "no-such-dir"), "not_found");
  EXPECT_EQ(kind_of(kFixtures + "smollm2_encodings.json"), "invalid_argument");
}

// The whole SmolLM2 tokenizer.json is ~3.5 MB, too big to commit: when
// tools/make_tokenizer_fixtures.py --full-json DIR has saved it and NC_SMOLLM2_HF_DIR=DIR, the
// tokenizer.json path must encode exactly as the GGUF path.
TEST(Tokenizer, FullHfJsonEncodesAsGguf) {
  const char* dir = std::getenv("NC_SMOLLM2_HF_DIR");
  if (!dir) GTEST_SKIP() << "NC_SMOLLM2_HF_DIR not set";
  const auto json_tok = Tokenizer::from_hf_json(dir);
  const Tokenizer& gguf_tok = smollm2();
  ASSERT_EQ(json_tok->vocab_size(), gguf_tok.vocab_size());
  std::string all;
  for (const auto& c : read_json(kFixtures + "smollm2_encodings.json")["cases"]) {
    all += c["text"].get<std::string>();
  }
  for (const auto& text : {all, load_cases("ggml-vocab-starcoder.gguf").back().text}) {
    EXPECT_EQ(json_tok->encode(text, false, true), gguf_tok.encode(text, false, true));
  }
  EXPECT_EQ(json_tok->eos_ids(), gguf_tok.eos_ids());
}

}  // namespace
}  // namespace nc

// tokenizer.json files of SentencePiece-style BPE (byte_fallback, spaces as U+2581 through a
// Replace/Prepend normalizer or a Metaspace pre-tokenizer, as Gemma's and Llama 2's files are):
// a tiny hand-made vocabulary whose ids can be worked out by hand.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace nc {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const std::string kSp = "\xE2\x96\x81";  // U+2581

// `j` written as a tokenizer.json of its own folder, named for the test; returns its path. Per
// process: the suite may run as concurrent shards (tools/gtest_shards.sh).
std::string write_tokenizer_json(const std::string& name, const json& j) {
  const fs::path dir =
      fs::temp_directory_path() / ("nc_tok_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << j.dump();
  return (dir / "tokenizer.json").string();
}

// A tokenizer.json with the given normalizer and pre_tokenizer; returns its path.
std::string write_json(const std::string& name, const json& normalizer, const json& pre) {
  const json vocab = {{"<unk>", 0}, {kSp, 1},        {"h", 2},      {"i", 3},
                      {"hi", 4},    {kSp + "hi", 5}, {"<0x21>", 6}, {"<0xC3>", 7}};
  const json j = {{"model",
                   {{"type", "BPE"},
                    {"vocab", vocab},
                    {"merges", json::array({"h i", kSp + " hi"})},
                    {"byte_fallback", true},
                    {"unk_token", "<unk>"}}},
                  {"normalizer", normalizer},
                  {"pre_tokenizer", pre},
                  {"added_tokens", json::array()}};
  return write_tokenizer_json("spm_" + name, j);
}

void expect_spm_like(const Tokenizer& t) {
  EXPECT_EQ(t.kind(), TokenizerKind::kUtf8Bpe);
  // "hi hi!" -> "▁hi▁hi!": h+i first, then ▁+hi; '!' is no token: its byte token.
  EXPECT_EQ(t.encode("hi hi!", false, false), (std::vector<int32_t>{5, 5, 6}));
  EXPECT_EQ(t.decode({5, 5, 6}), "hi hi!");  // the prepended space is given back
}

// generation_config.json's eos ids stop generation beside tokenizer_config.json's eos_token, as
// transformers' generate() and vLLM stop (Llama-3-Instruct: <|end_of_text|> and <|eot_id|>).
TEST(TokenizerJsonSpm, GenerationConfigEosIdsAreEos) {
  const fs::path file = write_json("gen_eos", nullptr, nullptr);
  std::ofstream(file.parent_path() / "tokenizer_config.json") << R"({"eos_token": "<unk>"})";
  std::ofstream(file.parent_path() / "generation_config.json")
      << R"({"eos_token_id": [0, 6, 999999], "bos_token_id": 1})";
  const auto t = Tokenizer::from_hf_json(file.string());
  EXPECT_TRUE(t->is_eos(0));
  EXPECT_TRUE(t->is_eos(6));
  EXPECT_FALSE(t->is_eos(5));
  EXPECT_EQ(t->eos_ids().size(), 2u) << "an id past the vocabulary is left out";
  std::ofstream(file.parent_path() / "generation_config.json") << R"({"eos_token_id": 7})";
  EXPECT_TRUE(Tokenizer::from_hf_json(file.string())->is_eos(7));
}

TEST(TokenizerJsonSpm, ReplaceAndPrependNormalizers) {
  const json norm = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Prepend"}, {"prepend", kSp}},
                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSp}}}}};
  expect_spm_like(*Tokenizer::from_hf_json(write_json("norm", norm, nullptr)));
}

TEST(TokenizerJsonSpm, MetaspacePreTokenizer) {
  const json pre = {
      {"type", "Metaspace"}, {"replacement", kSp}, {"prepend_scheme", "always"}, {"split", true}};
  expect_spm_like(*Tokenizer::from_hf_json(write_json("meta", nullptr, pre)));
}

TEST(TokenizerJsonSpm, UnsupportedComponentsAreNamed) {
  try {
    Tokenizer::from_hf_json(write_json("lower", {{"type", "Lowercase"}}, nullptr));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Lowercase"), std::string::npos) << e.what();
  }
  try {
    Tokenizer::from_hf_json(write_json("bert", nullptr, {{"type", "BertPreTokenizer"}}));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("BertPreTokenizer"), std::string::npos) << e.what();
  }
}

// Ids that would size the vocabulary wrongly are refused by name before anything is sized: the
// largest int64 (whose + 1 wrapped), past the id limit, negative, not an integer, in the
// vocabulary or among the added tokens.
TEST(TokenizerJsonSpm, BadTokenIdsAreNamedNotSized) {
  const json bad_ids[] = {json(int64_t(9223372036854775807)),
                          json(uint64_t(18446744073709551615u)),
                          json(int64_t(1) << 40),
                          json(-1),
                          json(2.5),
                          json("7")};
  int k = 0;
  for (const json& id : bad_ids) {
    for (const bool in_added : {false, true}) {
      json vocab = {{"a", 0}, {"b", 1}};
      json added = json::array();
      if (in_added)
        added.push_back({{"id", id}, {"content", "<bad>"}, {"special", true}});
      else
        vocab["bad"] = id;
      const json j = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}},
                      {"pre_tokenizer", {{"type", "ByteLevel"}}},
                      {"added_tokens", added}};
      const std::string path = write_tokenizer_json("badid_" + std::to_string(k++), j);
      try {
        Tokenizer::from_hf_json(path);
        ADD_FAILURE() << "accepted id " << id.dump();
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << e.what();
        const std::string what = e.what();
        EXPECT_NE(what.find(in_added ? "<bad>" : "'bad'"), std::string::npos) << what;
      }
      fs::remove_all(fs::path(path).parent_path());
    }
  }
}

// tokenizer.json's NFC normalizer (Qwen2's) is applied as Hugging Face applies it: "e" + U+0301
// (decomposed) encodes as the composed "é", here one merged byte-level token; without the
// normalizer the two spellings stay different ids.
TEST(TokenizerJsonNfc, TheNfcNormalizerComposesBeforeTokenizing) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[unicode::byte_to_utf8(uint8_t(b))] = b;
  const std::string e_acute = unicode::byte_to_utf8(0xC3) + unicode::byte_to_utf8(0xA9);
  vocab[e_acute] = 256;  // "é" = C3 A9
  auto write = [&](const std::string& name, const json& normalizer) {
    const json j = {{"model",
                     {{"type", "BPE"},
                      {"vocab", vocab},
                      {"merges", json::array({unicode::byte_to_utf8(0xC3) + " " +
                                              unicode::byte_to_utf8(0xA9)})}}},
                    {"normalizer", normalizer},
                    {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
                    {"added_tokens", json::array()}};
    return write_tokenizer_json("nfc_" + name, j);
  };
  const auto nfc = Tokenizer::from_hf_json(write("on", {{"type", "NFC"}}));
  const auto none = Tokenizer::from_hf_json(write("off", nullptr));
  const std::string composed = "caf\xC3\xA9", decomposed = "cafe\xCC\x81";
  const std::vector<int32_t> want = {'c', 'a', 'f', 256};
  EXPECT_EQ(nfc->encode(composed, false, false), want);
  EXPECT_EQ(nfc->encode(decomposed, false, false), want);
  EXPECT_EQ(none->encode(composed, false, false), want);
  EXPECT_EQ(none->encode(decomposed, false, false),
            (std::vector<int32_t>{'c', 'a', 'f', 'e', 0xCC, 0x81}));
  // Text that is not UTF-8 is tokenized byte for byte, normalizer or not.
  EXPECT_EQ(nfc->encode("a\xFF", false, false), (std::vector<int32_t>{'a', 0xFF}));
}

}  // namespace
}  // namespace nc

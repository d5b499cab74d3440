// The pre-tokenizer table (every tokenizer.ggml.pre name llama.cpp recognises) and the Split
// semantics of Hugging Face that the chains and tokenizer.json files rely on.
#include <gtest/gtest.h>

#include "core/error.h"
#include "tokenizer/pre_types.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"

namespace nc {
namespace {

std::vector<std::string> split(const std::vector<PreSplit>& steps, std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view p : PreTokenizer(steps).split(text)) out.emplace_back(p);
  return out;
}
using Pieces = std::vector<std::string>;

TEST(PreTypes, EveryKnownNameCompilesAndSplitsLosslessly) {
  const std::vector<std::string> names = known_pre_tokenizers();
  EXPECT_GE(names.size(), 90u);
  const std::string text =
      "Hello  world's 1234567 café ÜBER\n\n\tdef f(x): return x**2 # 日本語 한국어 🦙 "
      "<tag> "
      "...";
  for (const std::string& name : names) {
    const PreTokenizerConfig c = pre_tokenizer_config(name);
    ASSERT_FALSE(c.steps.empty()) << name;
    std::string joined;
    for (const std::string& p : split(c.steps, text)) joined += p;
    // Only the whitespace pre-tokenizer drops text (its spaces).
    if (name != "whitespace") {
      EXPECT_EQ(joined, text) << name;
    }
  }
  EXPECT_EQ(pre_tokenizer_config("").name, "default");  // the key absent
}

TEST(PreTypes, UnknownNameIsAnErrorNamingIt) {
  try {
    pre_tokenizer_config("no-such-pre");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("'no-such-pre'"), std::string::npos) << e.what();
  }
}

TEST(PreTypes, FamiliesSplitAsTheirModelsDo) {
  // Llama 3: digits by three; Qwen2: one by one; StarCoder: digits isolated before GPT-2.
  EXPECT_EQ(split(pre_tokenizer_config("llama-bpe").steps, "12345"), (Pieces{"123", "45"}));
  EXPECT_EQ(split(pre_tokenizer_config("qwen2").steps, "123"), (Pieces{"1", "2", "3"}));
  EXPECT_EQ(split(pre_tokenizer_config("starcoder").steps, "a 12"), (Pieces{"a", " ", "1", "2"}));
  // Thousands grouping from the right (AFMoE, Tiny Aya).
  EXPECT_EQ(split(pre_tokenizer_config("afmoe").steps, "1234567"), (Pieces{"1", "234", "567"}));
  EXPECT_EQ(split(pre_tokenizer_config("tiny_aya").steps, "1234567"), (Pieces{"1", "234", "567"}));
  // SuperBPE: an empty-match lookahead only cuts.
  EXPECT_EQ(split(pre_tokenizer_config("superbpe").steps, "1234567"), (Pieces{"1", "234", "567"}));
  // Kimi K2: Han runs apart from the letters around them.
  EXPECT_EQ(split(pre_tokenizer_config("kimi-k2").steps, "ab日本cd"), (Pieces{"ab", "日本", "cd"}));
  // Gemma 4: only newline runs split.
  EXPECT_EQ(split(pre_tokenizer_config("gemma4").steps, "a b\n\nc"), (Pieces{"a b", "\n\n", "c"}));
  EXPECT_TRUE(pre_tokenizer_config("gemma4").raw_utf8);
  EXPECT_TRUE(pre_tokenizer_config("llama3").ignore_merges);
}

TEST(PreSplit, BehaviorsFollowHuggingFace) {
  const std::string t = "a-b--c";
  auto with = [&](SplitBehavior b, bool invert = false) {
    return split({PreSplit{"-", b, invert}}, t);
  };
  EXPECT_EQ(with(SplitBehavior::kIsolated), (Pieces{"a", "-", "b", "-", "-", "c"}));
  EXPECT_EQ(with(SplitBehavior::kRemoved), (Pieces{"a", "b", "c"}));
  EXPECT_EQ(with(SplitBehavior::kMergedWithPrevious), (Pieces{"a-", "b-", "-", "c"}));
  EXPECT_EQ(with(SplitBehavior::kMergedWithNext), (Pieces{"a", "-b", "-", "-c"}));
  EXPECT_EQ(with(SplitBehavior::kContiguous), (Pieces{"a", "-", "b", "--", "c"}));
  // Inverted: the letters are the matches, and each "-" match stays its own range.
  EXPECT_EQ(with(SplitBehavior::kRemoved, true), (Pieces{"-", "-", "-"}));
  EXPECT_EQ(split_behavior_from_name("MergedWithNext"), SplitBehavior::kMergedWithNext);
  EXPECT_THROW(split_behavior_from_name("Sideways"), Error);
}

}  // namespace
}  // namespace nc

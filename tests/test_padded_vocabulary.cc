// A model whose embedding has more rows than its tokenizer has tokens (Qwen2.5 pads 151,665
// tokens to 151,936 rows): a padded id, sampled or forced by logit_bias, decodes to no text (as
// in Hugging Face's decode) instead of failing the step of every running request, and a
// structured-output grammar compiles over the whole model vocabulary.
#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "engine/text_codec.h"
#include "fake_model.h"
#include "nanocascade/engine.h"

namespace nc {
namespace {

const std::string kSmallJson = NC_FIXTURES_DIR "/tokenizer/smollm2_small";
constexpr int kTokenizerVocab = 3017;  // smollm2_small: 3,000 + 17 added tokens
constexpr int kModelVocab = kTokenizerVocab + 64;

std::unique_ptr<Engine> padded_engine() {
  EngineConfig cfg;
  cfg.page_size = 4;
  cfg.kv_cache_memory = std::to_string(256 * 4 * 8);
  return std::make_unique<Engine>(cfg, std::make_unique<fake::FakeModel>(kModelVocab, 4096),
                                  make_text_codec(kSmallJson));
}

TEST(PaddedVocabulary, PaddedIdsDecodeToNothing) {
  const std::unique_ptr<TextCodec> codec = make_text_codec(kSmallJson);
  const std::vector<int32_t> plain = codec->encode_plain("Hello world", false);
  std::vector<int32_t> with_padding = plain;
  with_padding.insert(with_padding.begin() + 1, kTokenizerVocab + 5);
  with_padding.push_back(kModelVocab - 1);
  EXPECT_EQ(codec->decode(with_padding.data(), with_padding.size(), false),
            codec->decode(plain.data(), plain.size(), false));
}

TEST(PaddedVocabulary, AForcedPaddedIdFailsNoRequest) {
  auto e = padded_engine();
  SamplingParams forced = fake::greedy_ignoring_eos(6);
  forced.logit_bias = {{kTokenizerVocab + 10, 100.0f}};
  const RequestId a = e->add_request(std::vector<int32_t>{1, 2, 3}, forced);
  const RequestId b = e->add_request(std::vector<int32_t>{4, 5, 6}, fake::greedy_ignoring_eos(6));
  std::map<RequestId, std::vector<int32_t>> tokens;
  std::map<RequestId, std::string> text;
  while (e->has_unfinished())
    for (const RequestOutput& o : e->step()) {
      tokens[o.id].insert(tokens[o.id].end(), o.new_token_ids.begin(), o.new_token_ids.end());
      text[o.id] += o.text_delta;
    }
  EXPECT_EQ(tokens[a], std::vector<int32_t>(6, kTokenizerVocab + 10));
  EXPECT_EQ(text[a], "");
  EXPECT_EQ(tokens[b].size(), 6u);
  EXPECT_EQ(e->stats().used_pages, 0);
}

TEST(PaddedVocabulary, AGrammarCompilesOverThePaddedVocabulary) {
  auto e = padded_engine();
  SamplingParams p = fake::greedy_ignoring_eos(8);
  p.structured = {StructuredOutput::Kind::Regex, "[0-9]+"};
  const RequestId id = e->add_request(std::vector<int32_t>{1, 2, 3}, p);
  std::string text;
  while (e->has_unfinished())
    for (const RequestOutput& o : e->step())
      if (o.id == id) text += o.text_delta;
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.find_first_not_of("0123456789"), std::string::npos) << text;
}

}  // namespace
}  // namespace nc

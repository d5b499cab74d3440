// The OpenAI wire format's small pieces (server/openai_format.h): completions' text offsets count
// characters, as OpenAI's and vLLM's Python strings do, so that text[offset:offset + len(token)]
// is the token on any text, not only ASCII.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/openai_format.h"

namespace nc::server {
namespace {

LogprobToken token(const std::string& text) {
  LogprobToken t;
  t.text = text;
  t.logprob = -0.5f;
  return t;
}

TEST(OpenAiFormat, TextOffsetsCountCharactersNotBytes) {
  // "Le café est très bon" after a 5-character prompt "Menu:" (offsets start at 5).
  const std::vector<LogprobToken> toks = {token("Le"),   token(" caf"),  token("é"),
                                          token(" est"), token(" très"), token(" bon")};
  const nlohmann::json lp = completion_logprobs_json(toks, 5);
  EXPECT_EQ(lp["text_offset"], nlohmann::json({5, 7, 11, 12, 16, 21}));
  EXPECT_EQ(tokens_text_size(toks), 20u);  // "Le café est très bon" has 20 characters
  EXPECT_EQ(text_offset_length("très"), 4u);
  EXPECT_EQ(text_offset_length("€😀"), 2u);  // three and four bytes, one character each
  EXPECT_EQ(text_offset_length(""), 0u);
}

}  // namespace
}  // namespace nc::server

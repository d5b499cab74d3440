// The HTTP server's request parser alone: OpenAI request bodies to the engine's parameters, and
// the bodies it must reject with a 400 naming the parameter (test_server_endpoints.cc and
// test_server_errors.cc take requests through a running server).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/api_error.h"
#include "server/request_parser.h"

namespace nc {

// ---------------------------------------------------------------------------------------------
// The request parser alone.

TEST(ServerParser, ChatFieldsMapToSamplingParams) {
  const auto r = server::parse_request(server::ApiKind::Chat, R"({
    "model": "m", "messages": [{"role": "developer", "content": "be brief"},
                               {"role": "user", "content": [{"type": "text", "text": "a"},
                                                            {"type": "text", "text": "b"}]},
                               {"role": "assistant", "content": null}],
    "max_completion_tokens": 7, "max_tokens": 99, "temperature": 0.5, "top_p": 0.9, "top_k": 0,
    "min_p": 0.1, "seed": -3, "stop": "x", "presence_penalty": 1, "frequency_penalty": -1,
    "n": 1, "logprobs": false, "user": "u1", "stream": true,
    "stream_options": {"include_usage": true}, "some_future_field": {"x": 1}})");
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "a\nb");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.sampling.max_tokens, 7);
  EXPECT_TRUE(r.max_tokens_given);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, -1);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_EQ(r.sampling.seed, uint64_t(int64_t(-3)));
  EXPECT_EQ(r.sampling.stop, std::vector<std::string>{"x"});
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 1.0f);
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, -1.0f);
  EXPECT_EQ(r.user, "u1");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

// vLLM's add_generation_prompt (default on) and continue_final_message (which turns the
// generation prompt's default off).
TEST(ServerParser, ChatPromptEnding) {
  using server::ApiKind;
  const std::string msgs = R"("messages":[{"role":"user","content":"x"}])";
  auto ending = [&](const std::string& extra) {
    return server::parse_request(ApiKind::Chat, "{" + msgs + extra + "}").prompt_ending;
  };
  EXPECT_TRUE(ending("").add_generation_prompt);
  EXPECT_FALSE(ending("").continue_final_message);
  EXPECT_FALSE(ending(R"(,"add_generation_prompt":false)").add_generation_prompt);
  const ChatPromptOptions cont = ending(R"(,"continue_final_message":true)");
  EXPECT_FALSE(cont.add_generation_prompt);
  EXPECT_TRUE(cont.continue_final_message);
}

TEST(ServerParser, CompletionPromptForms) {
  using server::ApiKind;
  auto p = server::parse_request(ApiKind::Completion, R"({"model":"m","prompt":"hi"})");
  EXPECT_EQ(p.prompt, "hi");
  EXPECT_FALSE(p.max_tokens_given);
  p = server::parse_request(ApiKind::Completion, R"({"model":"m","prompt":[1,2,3]})");
  EXPECT_TRUE(p.prompt_is_ids);
  EXPECT_EQ(p.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  p = server::parse_request(ApiKind::Completion, R"({"model":"m","prompt":[[4,5]]})");
  EXPECT_EQ(p.prompt_ids, (std::vector<int32_t>{4, 5}));
  p = server::parse_request(ApiKind::Completion,
                            R"({"model":"m","prompt":["x"], "stop":["a","b"]})");
  EXPECT_EQ(p.prompt, "x");
  EXPECT_EQ(p.sampling.stop, (std::vector<std::string>{"a", "b"}));
}

TEST(ServerParser, RejectsWithParamNames) {
  using server::ApiKind;
  struct Case {
    ApiKind kind;
    const char* body;
    const char* param;
  };
  const Case cases[] = {
      {ApiKind::Chat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"top_p":0})",
       "top_p"},
      {ApiKind::Chat, R"({"model":"m","messages":[{"role":"bot","content":"x"}]})",
       "messages[0].role"},
      {ApiKind::Chat, R"({"model":"m","messages":[{"role":"user"}]})", "messages[0].content"},
      {ApiKind::Chat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":17})", "n"},
      {ApiKind::Chat,
       R"({"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21})",
       "top_logprobs"},
      {ApiKind::Chat,
       R"({"model":"m","messages":[{"role":"user","content":"x"}],"logit_bias":{"x1":2}})",
       "logit_bias"},
      {ApiKind::Chat,
       R"({"model":"m","messages":[{"role":"user","content":"x"}],"logit_bias":{"7":-100.5}})",
       "logit_bias"},
      {ApiKind::Completion, R"({"model":"m","prompt":"x","n":2,"best_of":1})", "best_of"},
      {ApiKind::Completion, R"({"model":"m","prompt":"x","max_tokens":0})", "max_tokens"},
      {ApiKind::Completion, R"({"model":"m","prompt":[1,-2]})", "prompt"},
      {ApiKind::Completion, R"({"model":"m","prompt":"x","logprobs":6})", "logprobs"},
      {ApiKind::Completion, R"({"model":"m","prompt":"x","max_tokens":2.0})", "max_tokens"},
      {ApiKind::Chat,
       R"({"messages":[{"role":"user","content":"x"}],"continue_final_message":true,)"
       R"("add_generation_prompt":true})",
       "continue_final_message"},
      {ApiKind::Chat,
       R"({"messages":[{"role":"user","content":"x"}],"add_generation_prompt":"yes"})",
       "add_generation_prompt"},
      // A grammar decides where the output ends; min_tokens would mask its stop (a 503 before).
      {ApiKind::Chat,
       R"({"model":"m","messages":[{"role":"user","content":"x"}],"guided_choice":["yes","no"],)"
       R"("min_tokens":5})",
       ""},  // validate()'s: its message names min_tokens
  };
  for (const Case& c : cases) {
    try {
      server::parse_request(c.kind, c.body);
      ADD_FAILURE() << "accepted: " << c.body;
    } catch (const server::ApiError& e) {
      EXPECT_EQ(e.status(), 400) << c.body;
      EXPECT_EQ(e.param(), c.param) << c.body;
    }
  }
}

// Inputs the fuzzer (fuzz/fuzz_request_parser.cc) found; each once escaped as another exception.
TEST(ServerParser, FuzzerFindingsAreRejectedAs400) {
  const std::vector<std::string> findings = {
      // A number past a double: nlohmann throws out_of_range (406), not parse_error.
      R"({"model":8888881e3088888888888888888888"m","messages:-1,"top_k":clude_usage":true}})",
      R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1e400})",
  };
  for (const std::string& body : findings) {
    for (auto kind : {server::ApiKind::Chat, server::ApiKind::Completion}) {
      try {
        server::parse_request(kind, body);
        ADD_FAILURE() << "accepted: " << body;
      } catch (const server::ApiError& e) {
        EXPECT_EQ(e.status(), 400) << body;
      }
    }
  }
}

TEST(ServerParser, DeepNestingIsRejectedNotOverflowed) {
  const std::string deep =
      R"({"model":"m","x":)" + std::string(200000, '[') + std::string(200000, ']') + "}";
  EXPECT_THROW(server::parse_request(server::ApiKind::Chat, deep), server::ApiError);
}

}  // namespace nc

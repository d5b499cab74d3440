// A completions request whose prompt is a list of several prompts (server/completion_batch.h):
// one response whose choices are each prompt's, prompt by prompt, equal to the prompt alone; usage
// summed; an engine error names the prompt at fault; streaming a batch and oversized batches are
// 400s; every page is freed after.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/request_parser.h"
#include "server_harness.h"

namespace nc::test_server {
namespace {

TEST(ServerBatch, EachPromptsChoicesEqualThePromptAlone) {
  TestServer ts;
  const std::vector<std::string> prompts = {"The quick brown fox", "Hello", "A longer prompt here"};
  const std::vector<int32_t> ids = {5, 77, 200, 13};
  json batch = json::array();
  for (const std::string& p : prompts) batch.push_back(p);
  batch.push_back(ids);
  json body = {
      {"model", kModel}, {"prompt", batch}, {"max_tokens", 12}, {"temperature", 0}, {"n", 2}};
  auto r = ts.post("/v1/completions", body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  ASSERT_EQ(j["choices"].size(), 8u);
  int prompt_tokens = 0, completion_tokens = 0;
  for (size_t p = 0; p < 4; ++p) {
    const Alone ref = p < 3 ? complete_alone(prompts[p], greedy(12))
                            : run_alone([&](Engine& e) { return e.add_request(ids, greedy(12)); });
    for (size_t c = 0; c < 2; ++c) {
      const json& choice = j["choices"][p * 2 + c];
      EXPECT_EQ(choice["index"], int(p * 2 + c));
      EXPECT_EQ(choice["text"], ref.text) << p;
      EXPECT_EQ(choice["finish_reason"], ref.finish_reason) << p;
      completion_tokens += ref.completion_tokens;
    }
    prompt_tokens += ref.prompt_tokens;
  }
  EXPECT_EQ(j["usage"]["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(j["usage"]["completion_tokens"], completion_tokens);
  EXPECT_EQ(j["usage"]["total_tokens"], prompt_tokens + completion_tokens);
  EXPECT_TRUE(ts.wait_idle());
}

TEST(ServerBatch, BadBatchesAreErrorsNamingTheirField) {
  TestServer ts;
  json body = {{"model", kModel}, {"prompt", {"a", "b"}}, {"max_tokens", 4}, {"stream", true}};
  expect_openai_error(ts.post("/v1/completions", body), 400, "stream");
  EXPECT_EQ(json::parse(ts.post("/v1/completions", body)->body)["error"]["param"], "stream");
  // The third prompt holds an id outside the vocabulary: the error names it; the others are
  // cancelled and their pages freed.
  body = {{"model", kModel},
          {"prompt", {json::array({1, 2}), json::array({3}), json::array({kVocab + 5})}},
          {"max_tokens", 4}};
  auto r = ts.post("/v1/completions", body);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(json::parse(r->body)["error"]["param"], "prompt[2]") << r->body;
  body = {{"model", kModel}, {"prompt", {"a", ""}}, {"max_tokens", 4}};
  r = ts.post("/v1/completions", body);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(json::parse(r->body)["error"]["param"], "prompt[1]") << r->body;
  body["prompt"] = json::array();
  for (int i = 0; i <= server::kMaxBatchPrompts; ++i) body["prompt"].push_back("x");
  expect_openai_error(ts.post("/v1/completions", body), 400, "at most");
  EXPECT_TRUE(ts.wait_idle());
}

}  // namespace
}  // namespace nc::test_server

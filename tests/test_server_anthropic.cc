// POST /v1/messages and /v1/messages/count_tokens (server/anthropic_request.h,
// server/anthropic_builder.h): the Anthropic body read as its chat equivalent, block by block and
// error by error; the content blocks and stream built from known event sequences; and end to end
// on the fake model, against the same conversation run alone, with Anthropic's error shape and
// its x-api-key header.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/anthropic_builder.h"
#include "server/anthropic_request.h"
#include "server/api_error.h"
#include "server_harness.h"
#include "typed_events.h"

namespace nc {
namespace {

using namespace server;  // NOLINT: the suite's subject
using json = nlohmann::json;

ParsedRequest read(const json& body) {
  return parse_anthropic_request(body.dump());
}

ApiError error_reading(const json& body) {
  try {
    parse_anthropic_request(body.dump());
  } catch (const ApiError& e) {
    return e;
  }
  return ApiError(0, "", "");
}

TEST(AnthropicRequest, BlocksBecomeChatTurns) {
  const ParsedRequest r =
      read({{"max_tokens", 9},
            {"system",
             {{{"type", "text"}, {"text", "rule one"}}, {{"type", "text"}, {"text", "rule two"}}}},
            {"stop_sequences", {"END"}},
            {"top_k", 5},
            {"metadata", {{"user_id", "u1"}}},
            {"tools",
             {{{"name", "weather"},
               {"description", "the weather"},
               {"input_schema",
                {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}}}}}},
            {"tool_choice",
             {{"type", "tool"}, {"name", "weather"}, {"disable_parallel_tool_use", true}}},
            {"messages",
             {{{"role", "user"}, {"content", "Paris?"}},
              {{"role", "assistant"},
               {"content",
                {{{"type", "thinking"}, {"thinking", "hmm"}, {"signature", "x"}},
                 {{"type", "text"}, {"text", "Checking."}},
                 {{"type", "tool_use"},
                  {"id", "toolu_1"},
                  {"name", "weather"},
                  {"input", {{"city", "Paris"}}}}}}},
              {{"role", "user"},
               {"content",
                {{{"type", "tool_result"}, {"tool_use_id", "toolu_1"}, {"content", "sunny"}},
                 {{"type", "text"}, {"text", "thanks"}}}}}}}});
  EXPECT_EQ(r.sampling.max_tokens, 9);
  EXPECT_TRUE(r.max_tokens_is_cap);
  EXPECT_EQ(r.sampling.top_k, 5);
  EXPECT_EQ(r.sampling.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(r.user, "u1");
  EXPECT_EQ(r.tools.choice, ToolChoiceKind::Named);
  EXPECT_FALSE(r.tools.parallel_calls);
  ASSERT_EQ(r.tools.tools.size(), 1u);
  EXPECT_EQ(r.tools.tools[0]["function"]["parameters"]["type"], "object");
  const auto& m = r.tools.messages;
  ASSERT_EQ(m.size(), 5u);  // system, user, assistant (text + call), tool, user
  EXPECT_EQ(m[0]["content"], "rule one\nrule two");
  EXPECT_EQ(m[2]["content"], "Checking.");
  EXPECT_EQ(m[2]["tool_calls"][0]["id"], "toolu_1");
  EXPECT_EQ(m[2]["tool_calls"][0]["function"]["arguments"]["city"], "Paris");
  EXPECT_EQ(m[3]["role"], "tool");
  EXPECT_EQ(m[3]["tool_call_id"], "toolu_1");
  EXPECT_EQ(m[3]["content"], "sunny");
  EXPECT_EQ(m[4]["content"], "thanks");

  const ParsedRequest structured =
      read({{"max_tokens", 5},
            {"messages", {{{"role", "user"}, {"content", "x"}}}},
            {"output_config",
             {{"effort", "low"},
              {"format", {{"type", "json_schema"}, {"schema", {{"type", "object"}}}}}}}});
  EXPECT_EQ(structured.sampling.structured.kind, StructuredOutput::Kind::JsonSchema);

  EXPECT_EQ(read({{"max_tokens", 1},
                  {"messages", {{{"role", "user"}, {"content", "x"}}}},
                  {"tool_choice", {{"type", "any"}}},
                  {"tools", {{{"name", "f"}}}}})
                .tools.choice,
            ToolChoiceKind::Required);
}

// What Claude Code sends (cache_control on blocks and tools, thinking, context_management,
// metadata, system blocks) is read, and blocks the model cannot read become placeholders.
TEST(AnthropicRequest, AnAgentsRequestIsRead) {
  const json cache = {{"type", "ephemeral"}};
  const ParsedRequest r = read(
      {{"model", "m"},
       {"max_tokens", 32000},
       {"stream", true},
       {"thinking", {{"type", "enabled"}, {"budget_tokens", 1024}}},
       {"context_management", {{"edits", json::array()}}},
       {"metadata", {{"user_id", "user_abc"}}},
       {"system", {{{"type", "text"}, {"text", "You are an agent."}, {"cache_control", cache}}}},
       {"tools",
        {{{"name", "Read"},
          {"description", "read a file"},
          {"input_schema", {{"type", "object"}}},
          {"cache_control", cache}}}},
       {"messages",
        {{{"role", "user"},
          {"content",
           {{{"type", "text"}, {"text", "look"}, {"cache_control", cache}},
            {{"type", "image"}, {"source", {{"type", "base64"}, {"data", "AAAA"}}}}}}},
         {{"role", "assistant"},
          {"content",
           {{{"type", "tool_use"},
             {"id", "t1"},
             {"name", "Read"},
             {"input", {{"path", "a.png"}}}}}}},
         {{"role", "user"},
          {"content",
           {{{"type", "tool_result"},
             {"tool_use_id", "t1"},
             {"is_error", true},
             {"content", {{{"type", "image"}, {"source", json::object()}}}}}}}}}}});
  const auto& m = r.tools.messages;
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0]["content"], "You are an agent.");
  EXPECT_EQ(m[1]["content"], "look\n[image omitted: this model reads text only]");
  EXPECT_EQ(m[3]["content"], "Error: [image omitted: this model reads text only]");
  EXPECT_EQ(r.user, "user_abc");
  EXPECT_TRUE(r.stream);
}

// A last assistant turn (prefill) is continued, not closed: chat's continue_final_message.
TEST(AnthropicRequest, APrefillIsContinued) {
  const json user = {{"role", "user"}, {"content", "Capital of France?"}};
  ParsedRequest r = read({{"max_tokens", 5}, {"messages", {user}}});
  EXPECT_TRUE(r.prompt_ending.add_generation_prompt);
  EXPECT_FALSE(r.prompt_ending.continue_final_message);
  r = read({{"max_tokens", 5},
            {"messages", {user, {{"role", "assistant"}, {"content", "The capital is"}}}}});
  EXPECT_FALSE(r.prompt_ending.add_generation_prompt);
  EXPECT_TRUE(r.prompt_ending.continue_final_message);
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[1].content, "The capital is");
}

// thinking enabled / disabled is the templates' switch (chat_template_kwargs); other types leave
// the template's default.
TEST(AnthropicRequest, ThinkingSwitchesTheTemplatesReasoning) {
  const json user = {{{"role", "user"}, {"content", "x"}}};
  ParsedRequest r = read({{"max_tokens", 5}, {"messages", user}});
  EXPECT_TRUE(r.tools.template_kwargs.is_null());
  r = read({{"max_tokens", 5}, {"messages", user}, {"thinking", {{"type", "disabled"}}}});
  EXPECT_EQ(json::parse(r.tools.template_kwargs.dump()),
            json({{"enable_thinking", false}, {"thinking", false}}));
  EXPECT_TRUE(r.tools.active);  // rendered through the Jinja template, which reads them
  r = read({{"max_tokens", 5},
            {"messages", user},
            {"thinking", {{"type", "enabled"}, {"budget_tokens", 1024}}}});
  EXPECT_EQ(r.tools.template_kwargs["enable_thinking"], true);
  r = read({{"max_tokens", 5}, {"messages", user}, {"thinking", {{"type", "adaptive"}}}});
  EXPECT_TRUE(r.tools.template_kwargs.is_null());
  EXPECT_EQ(error_reading({{"max_tokens", 5}, {"messages", user}, {"thinking", "on"}}).param(),
            "thinking");
}

TEST(AnthropicRequest, ErrorsNameTheAnthropicField) {
  const json user = {{{"role", "user"}, {"content", "x"}}};
  struct Case {
    json body;
    const char* param;
  };
  const std::vector<Case> cases = {
      {{{"messages", user}}, "max_tokens"},
      {{{"max_tokens", 0}, {"messages", user}}, "max_tokens"},
      {{{"max_tokens", 5}}, "messages"},
      {{{"max_tokens", 5}, {"messages", {{{"role", "system"}, {"content", "x"}}}}},
       "messages.0.role"},
      {{{"max_tokens", 5},
        {"messages", {{{"role", "user"}, {"content", {{{"text", "no type"}}}}}}}},
       "messages.0.content.0.type"},
      {{{"max_tokens", 5},
        {"messages",
         {{{"role", "assistant"},
           {"content", {{{"type", "tool_use"}, {"id", "a"}, {"name", "f"}}}}}}}},
       "messages.0.content.0.input"},
      {{{"max_tokens", 5},
        {"messages", user},
        {"tools", {{{"type", "web_search_20250305"}, {"name", "w"}}}}},
       "tools.0.type"},
      {{{"max_tokens", 5}, {"messages", user}, {"tool_choice", {{"type", "maybe"}}}},
       "tool_choice.type"},
      {{{"max_tokens", 5}, {"messages", user}, {"stop_sequences", "END"}}, "stop_sequences"},
      {{{"max_tokens", 5}, {"messages", user}, {"temperature", -1}}, "temperature"},
      {{{"max_tokens", 5}, {"messages", user}, {"temperature", 1.5}}, "temperature"},  // 0 to 1
      {{{"max_tokens", 5}, {"messages", user}, {"guided_regex", "a+"}}, "guided_regex"},
      {{{"max_tokens", 5},
        {"messages", user},
        {"output_config", {{"format", {{"type", "regex"}}}}}},
       "output_config.format.type"},
  };
  for (const Case& c : cases) {
    const ApiError e = error_reading(c.body);
    EXPECT_EQ(e.status(), 400) << c.body.dump();
    EXPECT_EQ(e.param(), c.param) << c.body.dump() << ": " << e.what();
  }
  const json shape = anthropic_error_json(ApiError(404, "gone", "invalid_request_error"));
  EXPECT_EQ(shape, (json{{"type", "error"},
                         {"error", {{"type", "not_found_error"}, {"message", "gone"}}}}));
}

// --- the builder over known events ---------------------------------------------------------------

StreamEvent accepted() {
  return test::accepted_event(ToolFormat::Hermes, 7);
}

// A whole answer's tool_use input keeps the model's key order at every depth (it went through a
// key-sorting JSON type once), as the streamed input_json_delta fragments do.
TEST(AnthropicBuilder, ToolUseInputKeepsTheModelsKeyOrder) {
  const std::string args = R"({"zeta":1,"alpha":{"y":[{"d":1,"c":2}],"b":true},"mid":"x"})";
  const std::vector<StreamEvent> evs = test::output_events(
      {"<tool_call>\n{\"name\": \"f\", \"arguments\": " + args + "}\n</tool_call>"},
      FinishReason::Stop);
  AnthropicBuilder whole("msg_1", "m", accepted()), stream("msg_1", "m", accepted());
  test::whole_and_streamed(whole, stream, evs);
  const nlohmann::ordered_json w = whole.response();
  ASSERT_EQ(w["content"].size(), 1u);
  EXPECT_EQ(w["content"][0]["input"].dump(), args);
  EXPECT_NE(dump_json(w).find(R"("input":{"zeta":1,"alpha":)"), std::string::npos) << dump_json(w);
}

TEST(AnthropicBuilder, WholeAndStreamedBlocksAgree) {
  const std::vector<StreamEvent> evs = test::output_events(
      {"<think>plan</think>", "On it.", "\n<tool_call>\n{\"name\": \"weather\", ",
       "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"},
      FinishReason::Stop);
  AnthropicBuilder whole("msg_1", "m", accepted()), stream("msg_1", "m", accepted());
  const std::string body = test::whole_and_streamed(whole, stream, evs);
  const json w = whole.response();
  EXPECT_EQ(w["type"], "message");
  EXPECT_EQ(w["stop_reason"], "tool_use");
  EXPECT_EQ(w["usage"], (json{{"input_tokens", 7}, {"output_tokens", 4}}));
  ASSERT_EQ(w["content"].size(), 3u);
  EXPECT_EQ(w["content"][0], (json{{"type", "thinking"}, {"thinking", "plan"}, {"signature", ""}}));
  EXPECT_EQ(w["content"][1], (json{{"type", "text"}, {"text", "On it."}}));
  EXPECT_EQ(w["content"][2]["type"], "tool_use");
  EXPECT_EQ(w["content"][2]["name"], "weather");
  EXPECT_EQ(w["content"][2]["input"], (json{{"city", "Paris"}}));

  // The stream rebuilt block by block, as a client does.
  json blocks = json::array();
  std::vector<std::string> partial;
  std::string stop_reason;
  const std::vector<json> events = test::typed_sse_events(body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front()["type"], "message_start");
  EXPECT_EQ(events.back()["type"], "message_stop");
  for (const json& e : events) {
    if (e["type"] == "content_block_start") {
      EXPECT_EQ(e["index"], int(blocks.size()));
      blocks.push_back(e["content_block"]);
      partial.emplace_back();
    } else if (e["type"] == "content_block_delta") {
      json& b = blocks[e["index"].get<size_t>()];
      const json& d = e["delta"];
      if (d["type"] == "text_delta")
        b["text"] = b["text"].get<std::string>() + d["text"].get<std::string>();
      if (d["type"] == "thinking_delta")
        b["thinking"] = b["thinking"].get<std::string>() + d["thinking"].get<std::string>();
      if (d["type"] == "input_json_delta")
        partial[e["index"].get<size_t>()] += d["partial_json"].get<std::string>();
    } else if (e["type"] == "content_block_stop") {
      const size_t i = e["index"];
      if (blocks[i]["type"] == "tool_use") blocks[i]["input"] = json::parse(partial[i]);
    } else if (e["type"] == "message_delta") {
      stop_reason = e["delta"]["stop_reason"];
    }
  }
  // The same blocks; a call's id is made per answer.
  json whole_blocks = w["content"];
  EXPECT_FALSE(blocks[2]["id"].get<std::string>().empty());
  blocks[2].erase("id");
  whole_blocks[2].erase("id");
  EXPECT_EQ(blocks, whole_blocks);
  EXPECT_EQ(stop_reason, "tool_use");

  // A call the limit cut short: max_tokens, not tool_use (nothing to run).
  AnthropicBuilder cut_call("msg_3", "m", accepted());
  for (const StreamEvent& ev : test::output_events(
           {"<tool_call>\n{\"name\": \"sh\", \"arguments\": {\"cmd\": \"rm -rf /tm"},
           FinishReason::Length))
    cut_call.add(ev);
  EXPECT_EQ(cut_call.response()["stop_reason"], "max_tokens");

  AnthropicBuilder cut("msg_2", "m", accepted());
  for (const StreamEvent& ev : test::output_events({"a", "b"}, FinishReason::Length)) cut.add(ev);
  EXPECT_EQ(cut.response()["stop_reason"], "max_tokens");
  EXPECT_EQ(json(cut.response()["content"]), (json::array({{{"type", "text"}, {"text", "ab"}}})));
}

TEST(AnthropicBuilder, ACallTheLimitCutIsOneToolUseBlock) {
  const std::vector<StreamEvent> evs =
      test::output_events({"<tool_call>\n{\"name\": \"Write\", ",
                           "\"arguments\": {\"content\": ", "\"line1\\n", "line2"},
                          FinishReason::Length);
  AnthropicBuilder whole("msg_1", "m", accepted()), stream("msg_1", "m", accepted());
  const std::string body = test::whole_and_streamed(whole, stream, evs);
  const json w = whole.response();
  ASSERT_EQ(w["content"].size(), 1u) << w.dump();
  EXPECT_EQ(w["content"][0]["type"], "tool_use");
  EXPECT_EQ(w["content"][0]["name"], "Write");
  // Cut inside its arguments: {} whole, as a client makes of the streamed fragments (no key of
  // our own that the tool's input_schema does not have).
  EXPECT_EQ(w["content"][0]["input"], json::object()) << w.dump();
  EXPECT_EQ(w["stop_reason"], "max_tokens");
  int starts = 0;
  for (const json& e : test::typed_sse_events(body)) {
    if (e["type"] != "content_block_start") continue;
    ++starts;
    EXPECT_EQ(e["content_block"]["name"], "Write");
  }
  EXPECT_EQ(starts, 1);
}

TEST(AnthropicBuilder, AStopSequenceIsNamed) {
  std::vector<StreamEvent> evs = test::output_events({"Paris", " is"}, FinishReason::Stop);
  evs.back().output.stop_string = "\n\n";
  AnthropicBuilder whole("msg_1", "m", accepted()), stream("msg_1", "m", accepted());
  const std::string body = test::whole_and_streamed(whole, stream, evs);
  const json w = whole.response();
  EXPECT_EQ(w["stop_reason"], "stop_sequence");
  EXPECT_EQ(w["stop_sequence"], "\n\n");
  int deltas = 0;
  for (const json& e : test::typed_sse_events(body)) {
    if (e["type"] == "message_start") {
      EXPECT_TRUE(e["message"]["stop_sequence"].is_null());
    }
    if (e["type"] != "message_delta") continue;
    ++deltas;
    EXPECT_EQ(e["delta"]["stop_reason"], "stop_sequence");
    EXPECT_EQ(e["delta"]["stop_sequence"], "\n\n");
  }
  EXPECT_EQ(deltas, 1);

  // A call stops the turn first: no stop sequence is named then.
  std::vector<StreamEvent> call = test::output_events(
      {"<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>"}, FinishReason::Stop);
  call.back().output.stop_string = "STOP";
  AnthropicBuilder with_call("msg_3", "m", accepted());
  for (const StreamEvent& ev : call) with_call.add(ev);
  EXPECT_EQ(with_call.response()["stop_reason"], "tool_use");
  EXPECT_TRUE(with_call.response()["stop_sequence"].is_null());

  AnthropicBuilder eos("msg_2", "m", accepted());
  for (const StreamEvent& ev : test::output_events({"Paris"}, FinishReason::Stop)) eos.add(ev);
  EXPECT_EQ(eos.response()["stop_reason"], "end_turn");
  EXPECT_TRUE(eos.response()["stop_sequence"].is_null());
}

// --- end to end on the fake model
// ------------------------------------------------------------------

using test_server::TestServer;

TEST(ServerAnthropic, MessagesEqualTheChatRunAloneAndCountTokensAgrees) {
  TestServer ts;
  const test_server::Alone ref = test_server::chat_alone(
      {{"system", "be short"}, {"user", "hello there"}}, test_server::greedy(12));
  const json body = {{"model", test_server::kModel},
                     {"max_tokens", 12},
                     {"temperature", 0},
                     {"system", "be short"},
                     {"messages", {{{"role", "user"}, {"content", "hello there"}}}}};
  auto r = ts.post("/v1/messages", body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["content"][0]["text"], ref.text);
  EXPECT_EQ(j["usage"]["input_tokens"], ref.prompt_tokens);
  EXPECT_EQ(j["usage"]["output_tokens"], ref.completion_tokens);
  EXPECT_EQ(j["stop_reason"], ref.finish_reason == "length" ? "max_tokens" : "end_turn");

  // A max_tokens far past the context (4096 here) is a bound, not an error.
  json big = body;
  big["max_tokens"] = 64000;
  r = ts.post("/v1/messages", big);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;

  json count = body;
  count.erase("max_tokens");
  r = ts.post("/v1/messages/count_tokens", count);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["input_tokens"], ref.prompt_tokens);
  r = ts.post("/v1/messages/count_tokens", count.dump(), {}, "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 415);
  EXPECT_EQ(json::parse(r->body)["type"], "error");

  json streamed = body;
  streamed["stream"] = true;
  r = ts.post("/v1/messages", streamed);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  std::string text;
  for (const json& e : test::typed_sse_events(r->body))
    if (e["type"] == "content_block_delta") text += e["delta"]["text"].get<std::string>();
  EXPECT_EQ(text, ref.text);

  // A stop sequence from the middle of that answer: the text ends before it, and it is named.
  ASSERT_GE(ref.text.size(), 6u);
  const std::string stop = ref.text.substr(ref.text.size() / 2, 2);
  json stopped = body;
  stopped["stop_sequences"] = {"never-in-the-text", stop};
  r = ts.post("/v1/messages", stopped);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json s = json::parse(r->body);
  EXPECT_EQ(s["content"][0]["text"], ref.text.substr(0, ref.text.find(stop)));
  EXPECT_EQ(s["stop_reason"], "stop_sequence");
  EXPECT_EQ(s["stop_sequence"], stop);
  EXPECT_TRUE(ts.wait_idle());
}

TEST(ServerAnthropic, ErrorsHaveAnthropicsShapeAndTheKeyMayComeAsXApiKey) {
  server::ServerOptions o;
  o.api_key = "sk-test";
  TestServer ts({}, o);
  const json body = {{"max_tokens", 3}, {"messages", {{{"role", "user"}, {"content", "x"}}}}};
  auto r = ts.post("/v1/messages", body.dump(), {{"x-api-key", "sk-test"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  r = ts.post("/v1/messages", body.dump(), {{"x-api-key", "wrong"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["error"]["type"], "authentication_error") << r->body;
  r = ts.post("/v1/messages", body.dump(), {{"x-api-key", ""}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  json bad = body;
  bad.erase("max_tokens");
  r = ts.post("/v1/messages", bad.dump(), {{"x-api-key", "sk-test"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  const json e = json::parse(r->body);
  EXPECT_EQ(e["type"], "error");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_NE(e["error"]["message"].get<std::string>().find("max_tokens"), std::string::npos);
  bad = body;
  bad["model"] = "claude-other";
  r = ts.post("/v1/messages", bad.dump(), {{"x-api-key", "sk-test"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(json::parse(r->body)["error"]["type"], "not_found_error");
}

}  // namespace
}  // namespace nc

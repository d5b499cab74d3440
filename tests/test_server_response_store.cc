// Stored responses (server/response_store.h): the store's byte bound and least-recently-used
// order; previous_response_id continuing a stored conversation (the request side, then end to
// end on the fake model against the whole conversation run alone); GET and DELETE
// /v1/responses/{id}; store: false and a server that stores nothing.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/response_store.h"
#include "server/responses_request.h"
#include "server_harness.h"

namespace nc {
namespace {

using namespace server;  // NOLINT: the suite's subject
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

ResponseStore::Entry entry_of(const std::string& text, const std::string& parent = "") {
  return {parent, ojson::array({{{"role", "user"}, {"content", text}}}), json{{"id", text}}};
}

TEST(ResponseStore, KeepsWithinItsBytesDroppingTheLeastRecentlyUsed) {
  const size_t one = entry_of("aaaa").turn.dump().size() + entry_of("aaaa").response.dump().size() +
                     4 + ResponseStore::kEntryOverhead;
  ResponseStore s(3 * one);
  s.put("aaaa", entry_of("aaaa"));
  s.put("bbbb", entry_of("bbbb"));
  s.put("cccc", entry_of("cccc"));
  EXPECT_EQ(s.size(), 3u);
  EXPECT_EQ(s.bytes(), 3 * one);
  ASSERT_TRUE(s.get("aaaa"));  // now the most recently used: bbbb goes first
  s.put("dddd", entry_of("dddd"));
  EXPECT_EQ(s.size(), 3u);
  EXPECT_FALSE(s.get("bbbb"));
  EXPECT_EQ(s.get("aaaa")->response["id"], "aaaa");
  EXPECT_TRUE(s.erase("cccc"));
  EXPECT_FALSE(s.erase("cccc"));
  EXPECT_EQ(s.bytes(), 2 * one);
  s.put("dddd", entry_of("dddd"));  // a replacement counts once
  EXPECT_EQ(s.bytes(), 2 * one);
  ResponseStore tiny(one - 1);  // an entry larger than the store is not kept
  tiny.put("aaaa", entry_of("aaaa"));
  EXPECT_EQ(tiny.size(), 0u);
  EXPECT_FALSE(ResponseStore(0).enabled());
}

TEST(ResponseStore, AChainIsItsTurnsInOrderAndBreaksWithALink) {
  ResponseStore s(1 << 20);
  s.put("r1", entry_of("one"));
  s.put("r2", entry_of("two", "r1"));
  s.put("r3", entry_of("three", "r2"));
  const std::optional<ojson> c = s.conversation("r3");
  ASSERT_TRUE(c);
  ASSERT_EQ(c->size(), 3u);
  EXPECT_EQ((*c)[0]["content"], "one");
  EXPECT_EQ((*c)[2]["content"], "three");
  EXPECT_EQ(s.conversation("r1")->size(), 1u);
  s.erase("r2");
  std::string missing;
  EXPECT_FALSE(s.conversation("r3", &missing));  // an earlier link dropped: the chain is unknown
  EXPECT_EQ(missing, "r2");
  EXPECT_TRUE(s.conversation("r1"));
  // A request continuing r3 is told which link is gone.
  const HistoryLookup history = [&](const std::string& id, std::string& gone) {
    return s.conversation(id, &gone);
  };
  try {
    parse_responses_request(R"({"previous_response_id": "r3", "input": "go on"})", {}, history);
    ADD_FAILURE() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param(), "previous_response_id");
    EXPECT_NE(std::string(e.what()).find("response 'r2', which 'r3' continues"), std::string::npos)
        << e.what();
  }
}

TEST(ResponseStore, KeepsTextCutInsideACharacterAsReplacement) {
  ResponseStore s(1 << 20);
  const std::string cut = "ok \xF0\x9F";  // an emoji's first two bytes: a token limit hit there
  ASSERT_TRUE(s.put("r", {"", ojson::array({{{"role", "assistant"}, {"content", cut}}}),
                          json{{"output", {{{"type", "message"}, {"text", cut}}}}}}));
  const std::optional<ResponseStore::Entry> e = s.get("r");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->turn[0]["content"], "ok \xEF\xBF\xBD");  // U+FFFD
  EXPECT_NO_THROW((void)e->turn.dump());
  EXPECT_NO_THROW((void)e->response.dump());
  EXPECT_FALSE(ResponseStore(8).put("too-large", entry_of("aaaa")));
}

TEST(ResponsesRequest, PreviousResponseContinuesItsConversation) {
  const ojson stored = ojson::array(
      {{{"role", "user"}, {"content", "first"}}, {{"role", "assistant"}, {"content", "answer"}}});
  const HistoryLookup history = [&](const std::string& id, std::string&) -> std::optional<ojson> {
    if (id == "resp_a") return stored;
    return std::nullopt;
  };
  const json body = {
      {"previous_response_id", "resp_a"}, {"instructions", "new rules"}, {"input", "second"}};
  const ResponsesRequest r = parse_responses_request(body.dump(), {}, history);
  ASSERT_EQ(r.chat.messages.size(), 4u);
  EXPECT_EQ(r.chat.messages[0].content, "new rules");  // only this request's instructions
  EXPECT_EQ(r.chat.messages[1].content, "first");
  EXPECT_EQ(r.chat.messages[2].content, "answer");
  EXPECT_EQ(r.chat.messages[3].content, "second");
  ASSERT_EQ(r.input.size(), 1u);  // this turn's input only: the store links the rest
  EXPECT_EQ(r.input[0]["content"], "second");
  EXPECT_EQ(r.previous_response_id, "resp_a");
  EXPECT_TRUE(r.store);

  json unknown = body;
  unknown["previous_response_id"] = "resp_b";
  try {
    parse_responses_request(unknown.dump(), {}, history);
    ADD_FAILURE() << "an unknown previous response was accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param(), "previous_response_id");
    EXPECT_EQ(e.code(), "previous_response_not_found");
  }
  try {
    parse_responses_request(body.dump(), {}, {});  // no store
    ADD_FAILURE() << "previous_response_id was accepted without a store";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.code(), "unsupported_parameter");
  }
  EXPECT_FALSE(parse_responses_request(R"({"input":"x","store":false})").store);
}

TEST(ResponsesRequest, OutputTurnCarriesTextAndCalls) {
  const json response = {
      {"output",
       {{{"type", "reasoning"}, {"content", {{{"type", "reasoning_text"}, {"text", "hmm"}}}}},
        {{"type", "message"}, {"content", {{{"type", "output_text"}, {"text", "Sure."}}}}},
        {{"type", "function_call"},
         {"call_id", "call_9"},
         {"name", "f"},
         {"arguments", R"({"a":1})"}}}}};
  const ojson c = with_output_turn(ojson::array(), response);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0]["role"], "assistant");
  EXPECT_EQ(c[0]["content"], "Sure.");
  ASSERT_EQ(c[0]["tool_calls"].size(), 1u);
  EXPECT_EQ(c[0]["tool_calls"][0]["id"], "call_9");
  EXPECT_EQ(c[0]["tool_calls"][0]["function"]["arguments"], R"({"a":1})");
}

TEST(ResponsesRequest, AChainReadsAsItsRequestsReadIt) {
  // Input that starts with a function_call joins the stored answer's assistant turn; the chain
  // rebuilt later must read the same way (review of 2026-12-07: two assistant turns in a row).
  ResponseStore s(1 << 20);
  const json answer = {
      {"output",
       {{{"type", "message"}, {"content", {{{"type", "output_text"}, {"text", "ok"}}}}}}}};
  s.put("r1", {"", with_output_turn(ojson::array({{{"role", "user"}, {"content", "go"}}}), answer),
               answer});
  const HistoryLookup history = [&](const std::string& id, std::string& missing) {
    return s.conversation(id, &missing);
  };
  const json body = {
      {"previous_response_id", "r1"},
      {"input",
       {{{"type", "function_call"}, {"call_id", "c1"}, {"name", "f"}, {"arguments", "{}"}},
        {{"type", "function_call_output"}, {"call_id", "c1"}, {"output", "42"}}}}};
  const ResponsesRequest r = parse_responses_request(body.dump(), {}, history);
  std::vector<std::string> read;
  for (const ChatMessage& m : r.chat.messages) read.push_back(m.role);
  EXPECT_EQ(read, (std::vector<std::string>{"user", "assistant", "tool"}));

  const json done = {
      {"output",
       {{{"type", "message"}, {"content", {{{"type", "output_text"}, {"text", "done"}}}}}}}};
  s.put("r2", {"r1", with_output_turn(r.input, done), done});
  const std::optional<ojson> c = s.conversation("r2");
  ASSERT_TRUE(c);
  std::vector<std::string> rebuilt;
  for (const ojson& m : *c) rebuilt.push_back(m["role"]);
  EXPECT_EQ(rebuilt, (std::vector<std::string>{"user", "assistant", "tool", "assistant"}));
  EXPECT_EQ((*c)[1]["content"], "ok");
  ASSERT_EQ((*c)[1]["tool_calls"].size(), 1u);
  EXPECT_EQ((*c)[1]["tool_calls"][0]["id"], "c1");
}

TEST(ResponsesRequest, AStoredCallWhoseArgumentsAreNoObjectStillContinues) {
  // A model may write "arguments": "x=1" (the output parser keeps it as written); the server
  // must take its own answer back (review of 2026-12-07: a 400 on 'input').
  const json response = {{"output",
                          {{{"type", "function_call"},
                            {"call_id", "call_1"},
                            {"name", "Write"},
                            {"arguments", "x=1"}}}}};
  const ojson stored =
      with_output_turn(ojson::array({{{"role", "user"}, {"content", "go"}}}), response);
  const HistoryLookup history = [&](const std::string&, std::string&) -> std::optional<ojson> {
    return stored;
  };
  const json body = {
      {"previous_response_id", "resp_a"},
      {"input", {{{"type", "function_call_output"}, {"call_id", "call_1"}, {"output", "ok"}}}}};
  const ResponsesRequest r = parse_responses_request(body.dump(), {}, history);
  ASSERT_EQ(r.chat.messages.size(), 3u);
  EXPECT_EQ(r.chat.messages[1].role, "assistant");
}

using test_server::TestServer;

json respond(const TestServer& ts, const json& body) {
  auto r = ts.post("/v1/responses", body);
  if (!r) return json{{"transport", "failed"}};
  json j = json::parse(r->body);
  j["http_status"] = r->status;
  return j;
}

TEST(ServerResponseStore, ChainsRetrievesAndDeletes) {
  TestServer ts;
  const json first =
      respond(ts, {{"input", "hello"}, {"max_output_tokens", 6}, {"temperature", 0}});
  ASSERT_EQ(first["http_status"], 200) << first.dump();
  EXPECT_EQ(first["store"], true);
  const std::string id = first["id"];
  const std::string answer = first["output"][0]["content"][0]["text"];

  // The second turn sees the first: the same as the whole conversation sent at once.
  const json second = respond(ts, {{"previous_response_id", id},
                                   {"input", "more"},
                                   {"max_output_tokens", 6},
                                   {"temperature", 0}});
  ASSERT_EQ(second["http_status"], 200) << second.dump();
  const test_server::Alone ref = test_server::chat_alone(
      {{"user", "hello"}, {"assistant", answer}, {"user", "more"}}, test_server::greedy(6));
  EXPECT_EQ(second["usage"]["input_tokens"], ref.prompt_tokens);
  EXPECT_EQ(second["output"][0]["content"][0]["text"], ref.text);

  // A third turn continues the chain of both.
  const json third = respond(ts, {{"previous_response_id", second["id"]},
                                  {"input", "last"},
                                  {"max_output_tokens", 6},
                                  {"temperature", 0}});
  ASSERT_EQ(third["http_status"], 200) << third.dump();
  const test_server::Alone ref3 = test_server::chat_alone(
      {{"user", "hello"},
       {"assistant", answer},
       {"user", "more"},
       {"assistant", second["output"][0]["content"][0]["text"].get<std::string>()},
       {"user", "last"}},
      test_server::greedy(6));
  EXPECT_EQ(third["usage"]["input_tokens"], ref3.prompt_tokens);
  EXPECT_EQ(third["output"][0]["content"][0]["text"], ref3.text);

  auto got = ts.client()->Get(("/v1/responses/" + id).c_str());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(json::parse(got->body)["output"], first["output"]);
  auto del = ts.client()->Delete(("/v1/responses/" + id).c_str());
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 200);
  EXPECT_EQ(json::parse(del->body)["deleted"], true);
  got = ts.client()->Get(("/v1/responses/" + id).c_str());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 404);
  const json gone = respond(ts, {{"previous_response_id", id}, {"input", "x"}});
  EXPECT_EQ(gone["http_status"], 400);
  EXPECT_EQ(gone["error"]["code"], "previous_response_not_found");

  const json unstored = respond(ts, {{"input", "x"}, {"max_output_tokens", 2}, {"store", false}});
  ASSERT_EQ(unstored["http_status"], 200);
  EXPECT_EQ(unstored["store"], false);
  got = ts.client()->Get(("/v1/responses/" + unstored["id"].get<std::string>()).c_str());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 404);
  EXPECT_TRUE(ts.wait_idle());
}

TEST(ServerResponseStore, StreamedResponsesAreStoredToo) {
  TestServer ts;
  auto r = ts.post(
      "/v1/responses",
      json{{"input", "hello"}, {"max_output_tokens", 4}, {"temperature", 0}, {"stream", true}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const size_t at = r->body.find("\"id\":\"resp_");
  ASSERT_NE(at, std::string::npos);
  const std::string id = r->body.substr(at + 6, r->body.find('"', at + 6) - at - 6);
  auto got = ts.client()->Get(("/v1/responses/" + id).c_str());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200) << id;
  EXPECT_EQ(json::parse(got->body)["status"], "incomplete");  // 4 tokens of a longer answer
}

TEST(ServerResponseStore, AServerThatStoresNothingSaysSo) {
  server::ServerOptions o;
  o.responses_store_bytes = 0;
  TestServer ts({}, o);
  const json r = respond(ts, {{"input", "x"}, {"max_output_tokens", 2}});
  ASSERT_EQ(r["http_status"], 200);
  EXPECT_EQ(r["store"], false);
  const json prev = respond(ts, {{"input", "x"}, {"previous_response_id", r["id"]}});
  EXPECT_EQ(prev["http_status"], 400);
  EXPECT_EQ(prev["error"]["code"], "unsupported_parameter");
}

}  // namespace
}  // namespace nc

// The Responses and Messages answer builders (server/output_builder.h) over random model outputs
// (reasoning, text, tool calls, blanks, stray braces and tags) in random chunkings, ended by a
// stop or the token limit: what a client rebuilds from the stream's deltas is the whole answer
// (the same items or blocks, texts, names and arguments), the stream's events are well formed
// and numbered in order, and both end with the same status or stop reason.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/anthropic_builder.h"
#include "server/responses_builder.h"
#include "typed_events.h"

namespace nc::server::test_builder_random {
namespace {

using json = nlohmann::json;

// Well-formed pieces (a call the whole parse refuses after the stream announced it cannot be
// taken back: not compared here).
const std::vector<std::string> kPieces = {
    "<think>",
    "plan ",
    "</think>",
    "Sure. ",
    "\n",
    "  ",
    " more text ",
    "a}b{c",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>",
    "<tool_call>{\"name\": \"g\", \"arguments\": {\"s\": \"x}\\\"<tool_call>\"}}</tool_call>",
    "<tool_call>{\"name\": \"h\", \"arguments\": {\"b\": [1, {\"c\": null}]}}</tool_call>"};

struct Output {
  std::vector<std::string> chunks;
  FinishReason end = FinishReason::Stop;
};

// Pieces of calls the model broke off or got wrong.
const std::vector<std::string> kBroken = {"<tool_call>{\"name\": ",
                                          "\"h\", \"arguments\": {\"b\": [",
                                          "broken}",
                                          "</tool_call>",
                                          "<tool_call>",
                                          "tru",
                                          "\"x"};

Output random_output(std::mt19937& rng, bool broken = false) {
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  std::string text;
  for (size_t n = 1 + pick(8); n > 0; --n)
    text += broken && pick(2) == 0 ? kBroken[pick(kBroken.size())] : kPieces[pick(kPieces.size())];
  Output out;
  for (size_t i = 0; i < text.size();) {
    const size_t n = 1 + pick(12);
    out.chunks.push_back(text.substr(i, n));
    i += n;
  }
  out.end = pick(3) == 0 ? FinishReason::Length : FinishReason::Stop;
  return out;
}

StreamEvent accepted() {
  return test::accepted_event(ToolFormat::Hermes, 3);
}

// The Responses API: items rebuilt from the stream's deltas against the whole response's.
void check_responses(const Output& o) {
  const ResponsesMeta meta{"resp_r", 1, "m", json::object(), false, nullptr};
  ResponsesBuilder whole(meta, accepted()), stream(meta, accepted());
  const std::string body =
      test::whole_and_streamed(whole, stream, test::output_events(o.chunks, o.end));
  const json w = whole.response();
  const std::vector<json> evs = test::typed_sse_events(body);
  ASSERT_GE(evs.size(), 3u);
  json items = json::array();
  for (size_t i = 0; i < evs.size(); ++i) {
    ASSERT_EQ(evs[i]["sequence_number"], int(i));
    const std::string t = evs[i]["type"];
    if (t == "response.output_item.added") {
      ASSERT_EQ(evs[i]["output_index"], int(items.size()));
      items.push_back({{"type", evs[i]["item"]["type"]}, {"text", ""}});
      if (evs[i]["item"].contains("name")) items.back()["name"] = evs[i]["item"]["name"];
    } else if (t.ends_with(".delta")) {
      json& it = items.at(evs[i]["output_index"].get<size_t>());
      it["text"] = it["text"].get<std::string>() + evs[i]["delta"].get<std::string>();
    }
  }
  const json& done = evs.back()["response"];
  EXPECT_EQ(done["status"], w["status"]);
  ASSERT_EQ(items.size(), w["output"].size()) << w.dump();
  for (size_t k = 0; k < items.size(); ++k) {
    const json& wi = w["output"][k];
    EXPECT_EQ(items[k]["type"], wi["type"]);
    if (wi["type"] == "function_call") {
      EXPECT_EQ(items[k]["name"], wi["name"]);
      EXPECT_EQ(items[k]["text"], wi["arguments"]);
    } else {
      EXPECT_EQ(items[k]["text"], wi["content"][0]["text"]) << wi.dump();
    }
    // The stream's final response is the whole one but for the ids each builder draws.
    json a = done["output"][k], b = wi;
    for (json* x : {&a, &b})
      for (const char* id : {"id", "call_id"}) x->erase(id);
    EXPECT_EQ(a, b);
  }
}

// The Messages API: blocks rebuilt from the stream's deltas against the whole message's.
void check_messages(const Output& o) {
  AnthropicBuilder whole("msg_r", "m", accepted()), stream("msg_r", "m", accepted());
  const std::string body =
      test::whole_and_streamed(whole, stream, test::output_events(o.chunks, o.end));
  const json w = whole.response();
  json blocks = json::array();
  std::vector<std::string> partial;
  std::string stop_reason;
  for (const json& e : test::typed_sse_events(body)) {
    if (e["type"] == "content_block_start") {
      ASSERT_EQ(e["index"], int(blocks.size()));
      blocks.push_back(e["content_block"]);
      partial.emplace_back();
    } else if (e["type"] == "content_block_delta") {
      json& b = blocks.at(e["index"].get<size_t>());
      const json& d = e["delta"];
      if (d["type"] == "text_delta")
        b["text"] = b["text"].get<std::string>() + d["text"].get<std::string>();
      if (d["type"] == "thinking_delta")
        b["thinking"] = b["thinking"].get<std::string>() + d["thinking"].get<std::string>();
      if (d["type"] == "input_json_delta") partial[e["index"].get<size_t>()] += d["partial_json"];
    } else if (e["type"] == "content_block_stop") {
      const size_t i = e["index"];
      if (blocks[i]["type"] == "tool_use") {
        blocks[i]["input"] = json::parse(partial[i].empty() ? "{}" : partial[i]);
        blocks[i].erase("id");
      }
    } else if (e["type"] == "message_delta") {
      stop_reason = e["delta"]["stop_reason"];
    }
  }
  json whole_blocks = w["content"];
  for (json& b : whole_blocks)
    if (b["type"] == "tool_use") b.erase("id");
  EXPECT_EQ(blocks, whole_blocks);
  EXPECT_EQ(stop_reason, w["stop_reason"]);
}

TEST(BuilderRandom, StreamsRebuildTheWholeAnswer) {
  std::mt19937 rng(20261207);
  for (int round = 0; round < 600; ++round) {
    const Output o = random_output(rng);
    std::string text;
    for (const std::string& c : o.chunks) text += c;
    SCOPED_TRACE(::testing::Message()
                 << "round " << round << " end " << int(o.end) << " text " << text);
    check_responses(o);
    check_messages(o);
    if (::testing::Test::HasFailure()) return;
  }
}

// Whatever the model broke, a tool_use's streamed input_json is a JSON prefix: Anthropic's SDKs
// read it with a partial-JSON parser, which raises on anything else.
TEST(BuilderRandom, BrokenCallsStreamJsonPrefixes) {
  std::mt19937 rng(7);
  for (int round = 0; round < 600; ++round) {
    const Output o = random_output(rng, /*broken=*/true);
    AnthropicBuilder b("msg_r", "m", accepted());
    std::string body = b.start();
    for (const StreamEvent& ev : test::output_events(o.chunks, o.end)) body += b.stream(ev);
    body += b.end();
    std::map<size_t, std::string> partial;
    for (const json& e : test::typed_sse_events(body))
      if (e["type"] == "content_block_delta" && e["delta"]["type"] == "input_json_delta")
        partial[e["index"].get<size_t>()] += e["delta"]["partial_json"].get<std::string>();
    for (const auto& [index, text] : partial) {
      try {
        const json parsed = json::parse(text);
        EXPECT_FALSE(parsed.is_discarded());
      } catch (const json::parse_error& e) {
        EXPECT_GT(e.byte, text.size()) << "not a JSON prefix: " << text;  // past the end: a prefix
      }
    }
    if (::testing::Test::HasFailure()) return;
  }
}

}  // namespace
}  // namespace nc::server::test_builder_random

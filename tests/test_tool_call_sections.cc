// DeepSeek's and Kimi-K2's tool calls (server/tool_call_sections.h): the format is told from the
// template, DeepSeek V3/R1's fenced shape and V3.1's bare shape and Kimi's are all read, text
// outside the calls is content, a streamed answer streams each call's arguments as they come (the
// whole parse's object), and a forced call (the grammar's Hermes tag) is read too.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/tool_call_sections.h"
#include "server/tool_calls.h"

namespace nc::server::test_tool_call_sections {
namespace {

using json = nlohmann::json;

// How DeepSeek-V3's template writes an earlier call (an excerpt).
const std::string kTemplate =
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + "
    "'<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + "
    "tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}";

OutputFormat deepseek_format() {
  return detect_output_format(kTemplate, "", true);
}

// V3 / R1: the call's type, then the name and fenced arguments.
const std::string kV3Calls =
    "Checking both.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
    "```json\n{\"city\": \"Paris\", \"days\": 3}\n```<｜tool▁call▁end｜>\n"
    "<｜tool▁call▁begin｜>function<｜tool▁sep｜>note\n```json\n{\"text\": \"a\\nb\"}\n```"
    "<｜tool▁call▁end｜><｜tool▁calls▁end｜>";

// V3.1: the name, then the arguments as they are.
const std::string kV31Calls =
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\", "
    "\"days\": 3}<｜tool▁call▁end｜><｜tool▁call▁begin｜>note<｜tool▁sep｜>{\"text\": \"a\\nb\"}"
    "<｜tool▁call▁end｜><｜tool▁calls▁end｜>";

// Kimi-K2: the call's id (functions.NAME:K), then the arguments.
const std::string kKimiTemplate =
    "<|tool_calls_section_begin|>{%- for tool_call in message['tool_calls'] -%}"
    "<|tool_call_begin|>{{ formatted_id }}<|tool_call_argument_begin|>";
const std::string kKimiCalls =
    "Checking.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
    "<|tool_call_argument_begin|>{\"city\": \"Paris\", \"days\": 3}<|tool_call_end|>"
    "<|tool_call_begin|>functions.note:1<|tool_call_argument_begin|>{\"text\": \"a\\nb\"}"
    "<|tool_call_end|><|tool_calls_section_end|>";

void expect_two_calls(const ParsedOutput& p) {
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(p.calls[0].arguments), json::parse(R"({"city": "Paris", "days": 3})"));
  EXPECT_EQ(p.calls[1].name, "note");
  EXPECT_EQ(json::parse(p.calls[1].arguments), json::parse(R"({"text": "a\nb"})"));
  EXPECT_NE(p.calls[0].id, p.calls[1].id);
  if (p.calls[0].id.starts_with("functions.")) {  // Kimi's own shape
    EXPECT_EQ(p.calls[0].id, "functions.get_weather:0");
    EXPECT_EQ(p.calls[1].id, "functions.note:1");
  } else {
    EXPECT_TRUE(p.calls[0].id.starts_with("call_")) << p.calls[0].id;
  }
}

// What a client gets from streaming `text` in pieces of `step` bytes.
struct Streamed {
  std::string content;
  std::vector<ToolCall> calls;  // by index: name and the arguments' fragments joined
  std::vector<int> fragments;   // per call, how many non-empty argument fragments
  bool has_calls = false, cut = false;
};

Streamed stream(const std::string& text, const OutputFormat& f, size_t step) {
  OutputStream s(f);
  Streamed got;
  auto take = [&](const OutputStream::Delta& d) {
    got.content += d.content;
    for (const ToolCallDelta& c : d.calls) {
      if (c.first) {
        got.calls.resize(size_t(c.index) + 1);
        got.fragments.resize(size_t(c.index) + 1);
        got.calls[size_t(c.index)].name = c.name;
        got.calls[size_t(c.index)].id = c.id;
      }
      got.calls.at(size_t(c.index)).arguments += c.arguments;
      got.fragments.at(size_t(c.index)) += !c.arguments.empty();
    }
  };
  for (size_t i = 0; i < text.size(); i += step) take(s.add(text.substr(i, step)));
  take(s.finish());
  got.has_calls = s.has_calls();
  got.cut = s.call_cut();
  return got;
}

TEST(ToolCallSections, TheTemplateTellsTheFormat) {
  EXPECT_EQ(deepseek_format().tools, ToolFormat::DeepSeek);
  EXPECT_EQ(detect_output_format(kTemplate, "", false).tools, ToolFormat::None);
  EXPECT_EQ(detect_output_format("<tool_call></tool_call>", "", true).tools, ToolFormat::Hermes);
  EXPECT_EQ(detect_output_format(kKimiTemplate, "", true).tools, ToolFormat::Kimi);
}

TEST(ToolCallSections, BothShapesAreRead) {
  const ParsedOutput v3 = parse_output(kV3Calls, deepseek_format());
  EXPECT_EQ(v3.content, "Checking both.");
  expect_two_calls(v3);
  const ParsedOutput v31 =
      parse_output("<think>which city</think>\n\n" + kV31Calls, deepseek_format());
  EXPECT_EQ(v31.reasoning, "which city");
  EXPECT_EQ(v31.content, "");
  expect_two_calls(v31);
  const ParsedOutput kimi = parse_output(kKimiCalls, detect_output_format(kKimiTemplate, "", true));
  EXPECT_EQ(kimi.content, "Checking.");
  expect_two_calls(kimi);
}

TEST(ToolCallSections, KimiIdsGiveTheName) {
  const OutputFormat f = detect_output_format(kKimiTemplate, "", true);
  auto name_of = [&](const std::string& id) {
    const ParsedOutput p = parse_output("<|tool_calls_section_begin|><|tool_call_begin|>" + id +
                                            "<|tool_call_argument_begin|>{}<|tool_call_end|>",
                                        f);
    return p.calls.size() == 1 ? p.calls[0].name : "(no call)";
  };
  EXPECT_EQ(name_of("functions.get_weather:12"), "get_weather");
  EXPECT_EQ(name_of("functions.ns.tool:0"), "ns.tool");  // a dotted name stays whole
  EXPECT_EQ(name_of("lookup"), "lookup");
  EXPECT_EQ(name_of("functions.a:b"), "a:b");  // not a call number
  EXPECT_EQ(name_of(""), "(no call)");
}

// Kimi's ids are its templates' "functions.NAME:K", K going on from the calls in the history,
// the same streamed and whole, forced or not (a forced call streams as Hermes' tag).
TEST(ToolCallSections, KimiIdsNumberOnFromTheHistory) {
  OutputFormat f = detect_output_format(kKimiTemplate, "", true);
  f.first_call_index = 3;
  const ParsedOutput whole = parse_output(kKimiCalls, f);
  ASSERT_EQ(whole.calls.size(), 2u);
  EXPECT_EQ(whole.calls[0].id, "functions.get_weather:3");
  EXPECT_EQ(whole.calls[1].id, "functions.note:4");
  for (size_t step : {size_t(1), size_t(7), kKimiCalls.size()}) {
    const Streamed got = stream(kKimiCalls, f, step);
    ASSERT_EQ(got.calls.size(), 2u);
    EXPECT_EQ(got.calls[0].id, "functions.get_weather:3");
    EXPECT_EQ(got.calls[1].id, "functions.note:4");
  }
  f.forced_calls = true;
  const std::string forced = "<tool_call>\n{\"name\": \"note\", \"arguments\": {}}\n</tool_call>";
  EXPECT_EQ(parse_output(forced, f).calls.at(0).id, "functions.note:3");
  EXPECT_EQ(stream(forced, f, 5).calls.at(0).id, "functions.note:3");
}

TEST(ToolCallSections, WhatIsNoCallStaysContent) {
  const OutputFormat f = deepseek_format();
  EXPECT_EQ(parse_output("No tools needed: 2 + 2 = 4.", f).content, "No tools needed: 2 + 2 = 4.");
  // A body without its separator, or arguments that are no JSON object, stay as written;
  // text after the section is content.
  const std::string bad = "<｜tool▁call▁begin｜>get_weather {\"city\": 1}<｜tool▁call▁end｜>";
  const std::string list = "<｜tool▁call▁begin｜>f<｜tool▁sep｜>[1, 2]<｜tool▁call▁end｜>";
  ParsedOutput p = parse_output("<｜tool▁calls▁begin｜>" + bad + list +
                                    "<｜tool▁call▁begin｜>f<｜tool▁sep｜>{}<｜tool▁call▁end｜>"
                                    "<｜tool▁calls▁end｜> Done.",
                                f);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "f");
  EXPECT_EQ(p.calls[0].arguments, "{}");
  EXPECT_EQ(p.content, bad + list + " Done.");
  // A V3.1 tool named "function" is not taken for V3's type field.
  p = parse_output(
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>{\"x\": 1}"
      "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
      f);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "function");
  // max_tokens inside the second call's arguments: the first call, and no markup as content.
  p = parse_output(kV31Calls.substr(0, kV31Calls.find("{\"text") + 4), f);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(p.content, "");
}

TEST(ToolCallSections, StreamedCallsEqualTheWholeParse) {
  for (const std::string& text : {kV3Calls, kV31Calls, kKimiCalls}) {
    const OutputFormat f =
        text == kKimiCalls ? detect_output_format(kKimiTemplate, "", true) : deepseek_format();
    const ParsedOutput whole = parse_output(text, f);
    for (size_t step : {size_t(1), size_t(3), size_t(40), text.size()}) {
      const Streamed got = stream(text, f, step);
      SCOPED_TRACE(step);
      EXPECT_EQ(got.content, whole.content);  // no piece of a token leaks into the content
      EXPECT_TRUE(got.has_calls);
      ASSERT_EQ(got.calls.size(), 2u);
      for (size_t k = 0; k < 2; ++k) {
        EXPECT_EQ(got.calls[k].name, whole.calls[k].name);
        // The arguments as the model wrote them: the same object the whole parse re-serialised.
        EXPECT_EQ(json::parse(got.calls[k].arguments), json::parse(whole.calls[k].arguments));
        if (step == 1) {
          EXPECT_GT(got.fragments[k], 5) << "streamed as they come, not whole";
        }
      }
    }
  }
}

// max_tokens inside the second call's arguments: it went out as far as written, is no content,
// and the first call is not sent twice.
TEST(ToolCallSections, AStreamCutInsideACall) {
  const std::string text = kV31Calls.substr(0, kV31Calls.find("{\"text") + 4);
  const Streamed got = stream(text, deepseek_format(), 5);
  EXPECT_TRUE(got.cut);
  EXPECT_EQ(got.content, "");
  ASSERT_EQ(got.calls.size(), 2u);
  EXPECT_EQ(json::parse(got.calls[0].arguments), json::parse(R"({"city": "Paris", "days": 3})"));
  EXPECT_EQ(got.calls[1].arguments, "{\"te");
}

// Review of 2026-12-07: a header of blanks is read in linear time (a regex took minutes over
// 1,000 of them fed a byte at a time); no call is read after the section's end; a call's end
// token inside an unclosed string ends its streaming there, and the text after it is not lost.
TEST(ToolCallSections, HostileStreamsStayCheapAndBounded) {
  const OutputFormat f = deepseek_format();
  const std::string blanks = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f" +
                             std::string(500, ' ') + std::string(500, '\n');
  EXPECT_TRUE(stream(blanks, f, 1).calls.empty());
  const std::string after_end =
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{\"x\": 1}<｜tool▁call▁end｜>"
      "<｜tool▁calls▁end｜>after <｜tool▁call▁begin｜>h<｜tool▁sep｜>{\"y\": 2}<｜tool▁call▁end｜>";
  const ParsedOutput whole = parse_output(after_end, f);
  for (size_t step : {size_t(1), size_t(7), after_end.size()}) {
    const Streamed s = stream(after_end, f, step);
    ASSERT_EQ(s.calls.size(), 1u) << step;
    EXPECT_EQ(s.calls[0].name, "f");
    EXPECT_EQ(s.content, whole.content);
  }
  const std::string unclosed =
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{\"a\": \"x}<｜tool▁call▁end｜>"
      "<｜tool▁calls▁end｜>Done, thanks";
  for (size_t step : {size_t(1), size_t(5), unclosed.size()}) {
    const Streamed s = stream(unclosed, f, step);
    EXPECT_NE(s.content.find("Done, thanks"), std::string::npos) << step << ": " << s.content;
    for (const ToolCall& c : s.calls)
      EXPECT_EQ(c.arguments.find("<｜"), std::string::npos) << c.arguments;
  }
}

TEST(ToolCallSections, AForcedCallIsTheGrammarsHermesTag) {
  for (const std::string& tmpl : {kTemplate, kKimiTemplate}) {
    OutputFormat f = detect_output_format(tmpl, "", true);
    f.forced_calls = true;
    SCOPED_TRACE(int(f.tools));
    const ParsedOutput p = parse_output(
        "<tool_call>\n{\"name\": \"note\", \"arguments\": {\"text\": \"hi\"}}\n</tool_call>", f);
    ASSERT_EQ(p.calls.size(), 1u);
    EXPECT_EQ(p.calls[0].name, "note");
    EXPECT_EQ(json::parse(p.calls[0].arguments), json::parse(R"({"text": "hi"})"));
    // Streamed, its arguments go out as they come (as a Hermes call's), not whole at the end.
    const std::string text =
        "<tool_call>\n{\"name\": \"note\", \"arguments\": {\"text\": \"hello "
        "there\"}}\n</tool_call>";
    const Streamed got = stream(text, f, 4);
    ASSERT_EQ(got.calls.size(), 1u);
    EXPECT_GT(got.fragments[0], 2);
    EXPECT_EQ(json::parse(got.calls[0].arguments), json::parse(R"({"text": "hello there"})"));
  }
}

}  // namespace
}  // namespace nc::server::test_tool_call_sections

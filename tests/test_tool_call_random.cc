// Model output is untrusted: the output parser (server/tool_calls.h) and its streaming splitter,
// over every tool format, fed random mutations of well-formed outputs (cuts, deleted and
// repeated bytes, tokens of every format spliced in, deep nesting, bad UTF-8) in random
// chunkings. They must never throw or crash (ASan runs this too), the stream must give the
// whole parse's reasoning and, unless a call was cut by the end, its content; streamed calls must
// be announced in order with distinct ids before their arguments; a call the whole parse returns
// has a name.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "server/tool_call_xml.h"
#include "server/tool_calls.h"

namespace nc::server::test_tool_call_random {
namespace {

const std::vector<std::string> kSeeds = {
    "<think>plan</think>Sure.<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": [1, {\"y\": "
    "\"z\\\"\"}]}}\n</tool_call>\n<tool_call>{\"name\": \"b\", \"arguments\": {}}</tool_call>",
    "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"a\": 1}}; {\"name\": \"g\", "
    "\"parameters\": {\"s\": \"x;y\"}}",
    "Text [TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": 1}, \"id\": \"abcdefghi\"}, "
    "{\"name\": \"g\", \"arguments\": {}}]",
    "[TOOL_CALLS]f[CALL_ID]abc123xyz[ARGS]{\"a\": {\"b\": 2}}[TOOL_CALLS]g[ARGS]{}",
    "Check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
    "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
    "<think>x</think>A<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n"
    "{\"a\": 1}\n```<｜tool▁call▁end｜><｜tool▁call▁begin｜>g<｜tool▁sep｜>{\"b\": [2]}"
    "<｜tool▁call▁end｜><｜tool▁calls▁end｜> B",
    "<think>p</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris"
    "</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call><tool_call>g"
    "<arg_key>o</arg_key><arg_value>{\"a\": [1]}</arg_value></tool_call>",
    "A<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" "
    "string=\"true\">x</｜DSML｜parameter>\n<｜DSML｜parameter name=\"b\" string=\"false\">"
    "[1]</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>B",
    "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>"
    "{\"a\": \"\\u00e9\"}<|tool_call_end|><|tool_call_begin|>functions.g:1"
    "<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>",
};

// Pieces of every format, spliced into the seeds at random places.
const std::vector<std::string> kPieces = {"<tool_call>",
                                          "</tool_call>",
                                          "<think>",
                                          "</think>",
                                          "[TOOL_CALLS]",
                                          "[ARGS]",
                                          "[CALL_ID]",
                                          "<|python_tag|>",
                                          "<function=f>",
                                          "<parameter=p>",
                                          "</parameter>",
                                          "</function>",
                                          "<｜DSML｜function_calls>",
                                          "</｜DSML｜tool_calls>",
                                          "<｜DSML｜invoke name=\"g\">",
                                          "</｜DSML｜invoke>",
                                          "<｜DSML｜parameter name=\"p\" string=\"false\">",
                                          "</｜DSML｜parameter>",
                                          "<arg_key>",
                                          "</arg_key>",
                                          "<arg_value>",
                                          "</arg_value>",
                                          "<｜tool▁calls▁begin｜>",
                                          "<｜tool▁call▁begin｜>",
                                          "<｜tool▁sep｜>",
                                          "<｜tool▁call▁end｜>",
                                          "<|tool_calls_section_begin|>",
                                          "<|tool_call_begin|>",
                                          "<|tool_call_argument_begin|>",
                                          "<|tool_call_end|>",
                                          "{",
                                          "}",
                                          "[",
                                          "]",
                                          "\"",
                                          "\\",
                                          ":",
                                          ",",
                                          ";",
                                          "\n",
                                          " ",
                                          "```json\n",
                                          "{\"name\": \"h\", \"arguments\": ",
                                          "\"name\"",
                                          "null",
                                          "1e999",
                                          "\xE2\x9D",
                                          "\xff",
                                          std::string(200, '['),
                                          std::string(80, '{'),
                                          std::string(3000, ' ')};

std::string mutate(std::string s, std::mt19937& rng) {
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n)(rng); };
  const int edits = int(pick(4));
  for (int e = 0; e < edits; ++e) {
    const size_t at = pick(s.size());
    switch (pick(3)) {
      case 0:  // splice a piece of some format
        s.insert(at, kPieces[pick(kPieces.size() - 1)]);
        break;
      case 1:  // delete a run
        s.erase(at, pick(12));
        break;
      case 2:  // repeat a run
        s.insert(at, s.substr(at, pick(16)));
        break;
      default:  // cut the end (max_tokens)
        s.resize(at);
        break;
    }
  }
  return s;
}

const std::vector<OutputFormat>& formats() {
  static const std::vector<OutputFormat> all = [] {
    std::vector<OutputFormat> out;
    for (ToolFormat t : {ToolFormat::None, ToolFormat::Hermes, ToolFormat::Llama3Json,
                         ToolFormat::Mistral, ToolFormat::QwenXml, ToolFormat::GlmXml,
                         ToolFormat::DeepSeek, ToolFormat::Kimi, ToolFormat::Dsml}) {
      for (bool think : {false, true}) {
        for (bool forced : {false, true}) {
          OutputFormat f;
          f.tools = t;
          f.starts_in_think = think;
          f.forced_calls = forced && t != ToolFormat::None;
          if (is_tagged_format(t))
            f.param_types = std::make_shared<ParamTypeTable>(ParamTypeTable{param_types_of(
                nlohmann::ordered_json::parse(R"([{"type": "function", "function": {"name":
                  "get_weather", "parameters": {"properties": {"days": {"type": "integer"}}}}}])"))});
          out.push_back(f);
        }
      }
    }
    return out;
  }();
  return all;
}

// One text in one format, streamed in random chunks: the invariants above.
void check(const std::string& text, const OutputFormat& f, std::mt19937& rng) {
  const ParsedOutput whole = parse_output(text, f);
  for (const ToolCall& c : whole.calls) ASSERT_FALSE(c.name.empty());
  OutputStream s(f);
  std::string reasoning, content;
  std::set<std::string> ids;
  int announced = 0;
  auto take = [&](const OutputStream::Delta& d) {
    reasoning += d.reasoning;
    content += d.content;
    for (const ToolCallDelta& c : d.calls) {
      if (c.first) {
        ASSERT_EQ(c.index, announced);
        ASSERT_TRUE(ids.insert(c.id).second) << c.id;
        ++announced;
      }
      ASSERT_LT(c.index, announced);
    }
  };
  std::uniform_int_distribution<size_t> chunk(1, 48);
  for (size_t i = 0; i < text.size();) {
    const size_t n = chunk(rng);
    take(s.add(text.substr(i, n)));
    i += n;
  }
  take(s.finish());
  EXPECT_EQ(reasoning, whole.reasoning);
  if (!s.call_cut()) {
    EXPECT_EQ(content, whole.content);
  }
}

TEST(ToolCallRandom, MutatedOutputsNeverBreakTheParser) {
  std::mt19937 rng(20261207);
  for (int round = 0; round < 400; ++round) {
    const std::string text = mutate(kSeeds[size_t(round) % kSeeds.size()], rng);
    for (const OutputFormat& f : formats()) {
      SCOPED_TRACE(::testing::Message() << "round " << round << " format " << int(f.tools)
                                        << " think " << f.starts_in_think << " forced "
                                        << f.forced_calls << " text " << text.substr(0, 300));
      check(text, f, rng);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

}  // namespace
}  // namespace nc::server::test_tool_call_random

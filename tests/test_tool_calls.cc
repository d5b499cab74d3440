// The output parser (server/tool_calls.h) on fixed model outputs: Hermes/Qwen and Llama 3 tool
// calls, <think> reasoning, and the streaming splitter fed the same texts in every chunking.
#include <gtest/gtest.h>

#include <map>

#include <nlohmann/json.hpp>

#include "server/tool_calls.h"

namespace nc::server {
namespace {

using json = nlohmann::json;

const OutputFormat kHermes{ToolFormat::Hermes, false};
const OutputFormat kLlama{ToolFormat::Llama3Json, false};
const OutputFormat kPlain{ToolFormat::None, false};
const OutputFormat kMistral{ToolFormat::Mistral, false};

TEST(ToolCalls, DetectsFormatFromTemplate) {
  const std::string qwen = "{{- '<tools>' }}...within <tool_call></tool_call> XML tags";
  const std::string llama = R"(Respond in the format {"name": function name, "parameters": ...})";
  EXPECT_EQ(detect_output_format(qwen, "", true).tools, ToolFormat::Hermes);
  EXPECT_EQ(detect_output_format(qwen, "", false).tools, ToolFormat::None);
  EXPECT_EQ(detect_output_format(llama, "", true).tools, ToolFormat::Llama3Json);
  EXPECT_EQ(detect_output_format("{{ '<|python_tag|>' }}", "", true).tools, ToolFormat::Llama3Json);
  // A template that shows no format gets Hermes; what the messages say does not matter.
  EXPECT_EQ(detect_output_format("{{ m.content }}", "user wrote \"parameters\"", true).tools,
            ToolFormat::Hermes);
  EXPECT_TRUE(detect_output_format("", "<|Assistant|><think>\n", false).starts_in_think);
  EXPECT_FALSE(detect_output_format("", "<think>x</think> done", false).starts_in_think);
}

TEST(ToolCalls, HermesSingleCallWithContent) {
  const ParsedOutput p = parse_output(
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\"}}\n</tool_call>",
      kHermes);
  EXPECT_EQ(p.content, "Let me check.");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(p.calls[0].arguments), json({{"city", "Paris"}}));
  EXPECT_TRUE(p.calls[0].id.starts_with("call_"));
  EXPECT_EQ(p.calls[0].id.size(), 5u + 24u);
}

TEST(ToolCalls, HermesParallelCallsHaveDistinctIds) {
  const ParsedOutput p = parse_output(
      "<tool_call>{\"name\": \"a\", \"arguments\": {\"x\": 1}}</tool_call>\n"
      "<tool_call>{\"name\": \"b\", \"arguments\": \"{\\\"y\\\": [2]}\"}</tool_call>",
      kHermes);
  EXPECT_EQ(p.content, "");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "a");
  EXPECT_EQ(p.calls[1].name, "b");
  EXPECT_EQ(json::parse(p.calls[1].arguments), json::parse(R"({"y": [2]})"));
  EXPECT_NE(p.calls[0].id, p.calls[1].id);
}

TEST(ToolCalls, HermesUnclosedAndMalformed) {
  // Cut off by max_tokens after a complete object: still a call.
  ParsedOutput p = parse_output("<tool_call>{\"name\": \"a\", \"arguments\": {}}", kHermes);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].arguments, "{}");
  // ... or inside its closing tag: the tag's start is not content.
  p = parse_output("<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool", kHermes);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.content, "");
  // Not JSON, or no name: left as content.
  p = parse_output("x <tool_call>{\"name\": </tool_call> y", kHermes);
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, "x <tool_call>{\"name\": </tool_call> y");
  p = parse_output("<tool_call>{\"arguments\": {}}</tool_call>", kHermes);
  EXPECT_TRUE(p.calls.empty());
  // Nesting past 64 levels is no call (bounded work on untrusted output); 60 is.
  const auto nested = [](int d) {
    return "<tool_call>{\"name\": \"a\", \"arguments\": {\"x\": " + std::string(d, '[') +
           std::string(d, ']') + "}}</tool_call>";
  };
  EXPECT_EQ(parse_output(nested(60), kHermes).calls.size(), 1u);
  EXPECT_TRUE(parse_output(nested(100000), kHermes).calls.empty());
}

TEST(ToolCalls, PlainFormatNeverParsesCalls) {
  const ParsedOutput p = parse_output("<tool_call>{\"name\": \"a\"}</tool_call>", kPlain);
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, "<tool_call>{\"name\": \"a\"}</tool_call>");
}

TEST(ToolCalls, Llama3Json) {
  ParsedOutput p = parse_output(R"({"name": "f", "parameters": {"q": "a;b"}})", kLlama);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(json::parse(p.calls[0].arguments), json({{"q", "a;b"}}));
  p = parse_output(
      R"(<|python_tag|>{"name": "f", "parameters": {}}; {"name": "g", "parameters": {"k": 1}})",
      kLlama);
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[1].name, "g");
  p = parse_output("The answer is {not json}", kLlama);
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, "The answer is {not json}");
  // A JSON answer with a "name" but no arguments is an answer (as vLLM's llama3_json), not a
  // call to a function "Alice".
  p = parse_output(R"({"name": "Alice", "age": 30})", kLlama);
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, R"({"name": "Alice", "age": 30})");
  // Arguments keep the order the model wrote their keys in.
  p = parse_output(R"(<tool_call>{"name": "f", "arguments": {"z": 1, "a": 2}}</tool_call>)",
                   kHermes);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].arguments, R"({"z":1,"a":2})");
}

TEST(ToolCalls, ThinkBlockIsReasoning) {
  ParsedOutput p = parse_output("<think>\nstep 1\n</think>\n\nThe answer.", kPlain);
  EXPECT_EQ(p.reasoning, "\nstep 1\n");
  EXPECT_EQ(p.content, "The answer.");
  p = parse_output("still thinking", OutputFormat{ToolFormat::None, true});
  EXPECT_EQ(p.reasoning, "still thinking");
  EXPECT_EQ(p.content, "");
  p = parse_output("r</think>ok<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>",
                   OutputFormat{ToolFormat::Hermes, true});
  EXPECT_EQ(p.reasoning, "r");
  EXPECT_EQ(p.content, "ok");
  ASSERT_EQ(p.calls.size(), 1u);
  // A <think> not at the start is content.
  p = parse_output("a <think>b</think>", kPlain);
  EXPECT_EQ(p.reasoning, "");
  EXPECT_EQ(p.content, "a <think>b</think>");
}

// Mistral's reasoning models (Magistral, Ministral reasoning): [THINK] ... [/THINK] when the
// template writes [THINK], read and streamed as <think> is; the control tokens are kept in the
// text; a prompt ending in [THINK] starts the output in reasoning.
TEST(ToolCalls, MistralThinkBlockIsReasoning) {
  const std::string tmpl = "{{- '[THINK]' + block['thinking'] + '[/THINK]' }}[TOOL_CALLS]";
  OutputFormat f = detect_output_format(tmpl, "[INST]q[/INST]", true);
  EXPECT_EQ(f.think_open, "[THINK]");
  EXPECT_EQ(f.tools, ToolFormat::Mistral);
  EXPECT_FALSE(f.starts_in_think);
  EXPECT_TRUE(keeps_special_tokens(detect_output_format(tmpl, "", false)));
  EXPECT_FALSE(keeps_special_tokens(kPlain));
  ParsedOutput p = parse_output("[THINK]step 1[/THINK]The answer.[TOOL_CALLS]f[ARGS]{\"a\": 1}", f);
  EXPECT_EQ(p.reasoning, "step 1");
  EXPECT_EQ(p.content, "The answer.");
  ASSERT_EQ(p.calls.size(), 1u);
  // <think> is content for such a template, [THINK] for any other.
  EXPECT_EQ(parse_output("<think>x</think>y", f).content, "<think>x</think>y");
  EXPECT_EQ(parse_output("[THINK]x[/THINK]y", kPlain).content, "[THINK]x[/THINK]y");
  const OutputFormat opened = detect_output_format(tmpl, "[INST]q[/INST][THINK]\n", false);
  EXPECT_TRUE(opened.starts_in_think);
  p = parse_output("still[/THINK] done", opened);
  EXPECT_EQ(p.reasoning, "still");
  EXPECT_EQ(p.content, "done");
}

// Feeds text in chunks of `step` bytes; the concatenated deltas must equal parse_output's (a
// streamed call's argument fragments concatenate to the same JSON object).
void expect_stream_matches(const std::string& text, const OutputFormat& f) {
  const ParsedOutput whole = parse_output(text, f);
  for (size_t step = 1; step <= text.size(); ++step) {
    OutputStream s(f);
    std::string reasoning, content;
    std::vector<ToolCall> calls;
    auto take_calls = [&](const std::vector<ToolCallDelta>& ds) {
      for (const ToolCallDelta& d : ds) {
        if (d.first) {
          ASSERT_EQ(d.index, int(calls.size()));
          calls.push_back(ToolCall{d.id, d.name, ""});
        }
        ASSERT_LT(d.index, int(calls.size()));
        calls[size_t(d.index)].arguments += d.arguments;
      }
    };
    for (size_t i = 0; i < text.size(); i += step) {
      OutputStream::Delta d = s.add(text.substr(i, step));
      take_calls(d.calls);
      reasoning += d.reasoning;
      content += d.content;
    }
    OutputStream::Delta d = s.finish();
    take_calls(d.calls);
    reasoning += d.reasoning;
    content += d.content;
    SCOPED_TRACE(testing::Message() << "step " << step << " text " << text);
    EXPECT_EQ(reasoning, whole.reasoning);
    // Whitespace the whole parse trims is held back, not streamed.
    EXPECT_EQ(content, whole.content);
    ASSERT_EQ(calls.size(), whole.calls.size());
    EXPECT_EQ(s.has_calls(), !whole.calls.empty());
    for (size_t k = 0; k < calls.size(); ++k) {
      EXPECT_EQ(calls[k].name, whole.calls[k].name);
      EXPECT_EQ(json::parse(calls[k].arguments), json::parse(whole.calls[k].arguments));
    }
  }
}

TEST(ToolCalls, StreamMatchesWholeParseInEveryChunking) {
  expect_stream_matches(
      "<think>plan</think>Sure.<tool_call>{\"name\": \"a\", \"arguments\": {\"x\": 1}}</tool_call>"
      "<tool_call>{\"name\": \"b\", \"arguments\": {}}</tool_call>",
      kHermes);
  expect_stream_matches("Just <tool text <t and no call.", kHermes);
  expect_stream_matches("<thin> is not a tag", kPlain);
  expect_stream_matches("<think>a</thi</think>b", kPlain);
  expect_stream_matches("{\"name\": \"f\", \"parameters\": {\"a\": 1}}", kLlama);
  expect_stream_matches("no call here", kLlama);
  expect_stream_matches(R"({"name": "Alice", "age": 30})", kLlama);
  expect_stream_matches("r1 </think> answer", OutputFormat{ToolFormat::None, true});
  // Blanks around the content, or all of it, never stream where the whole parse trims them.
  expect_stream_matches(
      "<think>a</think>\n\n<tool_call>{\"name\": \"f\", \"arguments\": {}}"
      "</tool_call>\n",
      kHermes);
  expect_stream_matches(
      "\n Sure, one moment. \n<tool_call>{\"name\": \"f\", \"arguments\": "
      "{}}</tool_call>",
      kHermes);
  expect_stream_matches("<think>a</think>\n\nThe answer.\n\n", kPlain);
  expect_stream_matches("Hi <tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call> bye\n",
                        kHermes);
  expect_stream_matches("  plain text, kept as written \n", kPlain);
  // Cut by max_tokens inside the closing tag: one call, no markup as content, streamed or whole.
  expect_stream_matches("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</", kHermes);
  expect_stream_matches("<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_c", kHermes);
  const OutputFormat mistral_think = detect_output_format("[THINK][TOOL_CALLS]", "", true);
  expect_stream_matches("[THINK]a [/THIN b[/THINK] The answer.[TOOL_CALLS]f[ARGS]{}",
                        mistral_think);
}

// A call streamed from its header that the whole parse then refuses (an extra '}') must not take
// the place of the next call, which the stream could not follow (keys in the other order): that
// call is sent whole under a new index, not lost. (The refused one cannot be taken back.)
TEST(ToolCalls, AStreamedCallTheParseRefusesDoesNotHideTheNext) {
  const std::string text =
      "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}}</tool_call>\n"
      "<tool_call>{\"arguments\": {\"b\": 2}, \"name\": \"g\"}</tool_call>";
  const ParsedOutput whole = parse_output(text, kHermes);
  ASSERT_EQ(whole.calls.size(), 1u);
  ASSERT_EQ(whole.calls[0].name, "g");
  OutputStream s(kHermes);
  std::vector<ToolCallDelta> deltas;
  for (size_t i = 0; i < text.size(); i += 7) {
    auto d = s.add(text.substr(i, 7));
    deltas.insert(deltas.end(), d.calls.begin(), d.calls.end());
  }
  auto d = s.finish();
  deltas.insert(deltas.end(), d.calls.begin(), d.calls.end());
  std::map<int, ToolCall> calls;
  for (const ToolCallDelta& c : deltas) {
    if (c.first) calls[c.index].name = c.name;
    calls[c.index].arguments += c.arguments;
  }
  bool saw_g = false;
  for (const auto& [index, call] : calls) {
    if (call.name != "g") continue;
    saw_g = true;
    EXPECT_EQ(json::parse(call.arguments), json::parse(R"({"b": 2})"));
  }
  EXPECT_TRUE(saw_g) << "the call g was lost";
}

// A model that writes a long run of blanks (or a never-ending name) where a call's header should
// be: no stack overflow in the header's regex (30k blanks crashed the server), no call, the text
// as content, in every format.
TEST(ToolCalls, ALongRunWhereAHeaderShouldBeIsNoCrash) {
  const std::string blanks(40000, ' ');
  const std::vector<std::pair<std::string, OutputFormat>> cases = {
      {"<tool_call>" + blanks, kHermes},
      {"<tool_call>{\"name\": \"" + std::string(60000, 'x'), kHermes},
      {"{" + blanks, kLlama},
      {"[TOOL_CALLS][" + blanks, OutputFormat{ToolFormat::Mistral, false}},
      {"[TOOL_CALLS]" + std::string(60000, 'x'), OutputFormat{ToolFormat::Mistral, false}}};
  for (const auto& [text, format] : cases) {
    OutputStream s(format);
    size_t calls = 0;
    for (size_t i = 0; i < text.size(); i += 16) calls += s.add(text.substr(i, 16)).calls.size();
    calls += s.finish().calls.size();
    EXPECT_EQ(calls, 0u) << text.substr(0, 20);
    EXPECT_FALSE(s.has_calls());
  }
}

// A forced Mistral call (no control token) that is no call leaves no empty call behind.
TEST(ToolCalls, AForcedMistralObjectWithoutANameIsContentOnly) {
  const ParsedOutput p =
      parse_output(R"({"arguments": {}})", OutputFormat{ToolFormat::Mistral, false, true});
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, R"({"arguments": {}})");
}

TEST(ToolCalls, MistralListAndNamedForms) {
  ParsedOutput p = parse_output(
      R"(Let me check.[TOOL_CALLS] [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}])",
      kMistral);
  EXPECT_EQ(p.content, "Let me check.");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "a");
  EXPECT_EQ(json::parse(p.calls[0].arguments), json({{"x", 1}}));
  EXPECT_EQ(p.calls[1].name, "b");
  p = parse_output(
      R"([TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]f[CALL_ID]abc123XYZ[ARGS]{})",
      kMistral);
  EXPECT_EQ(p.content, "");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(p.calls[0].arguments), json({{"city", "Paris"}}));
  EXPECT_EQ(p.calls[1].name, "f");
  // Not calls: the text stays content; without the control token a list is content unless the
  // call was forced (tool_choice).
  p = parse_output("[TOOL_CALLS] not json", kMistral);
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, "[TOOL_CALLS] not json");
  const std::string bare = R"([{"name": "a", "arguments": {}}])";
  EXPECT_TRUE(parse_output(bare, kMistral).calls.empty());
  EXPECT_EQ(parse_output(bare, OutputFormat{ToolFormat::Mistral, false, true}).calls.size(), 1u);
  EXPECT_EQ(detect_output_format("{{ '[TOOL_CALLS]' }} \"parameters\"", "", true).tools,
            ToolFormat::Mistral);
}

TEST(ToolCalls, MistralStreamMatchesWholeParse) {
  expect_stream_matches(
      R"(Sure [TOOL_CALLS][{"name": "a", "arguments": {"x": [1, {"y": "}"}]}}, {"name": "b", "arguments": {"s": "a\"b"}}])",
      kMistral);
  expect_stream_matches(R"([TOOL_CALLS]f[ARGS]{"q": "{["}[TOOL_CALLS]g[ARGS]{})", kMistral);
  // Nemo's list with the "id" its template writes after the arguments (not used: the server's).
  const std::string nemo =
      R"([TOOL_CALLS][{"name": "a", "arguments": {"x": 1}, "id": "abc123XYZ"}, )"
      R"({"name": "b", "arguments": {}, "id": "q\"9"}])";
  expect_stream_matches(nemo, kMistral);
  // Both calls stream as they come: announced before the end, nothing left for finish().
  OutputStream s(kMistral);
  int announced = 0;
  for (char c : nemo)
    for (const ToolCallDelta& d : s.add(std::string(1, c)).calls) announced += d.first;
  EXPECT_EQ(announced, 2);
  EXPECT_TRUE(s.finish().calls.empty());
  expect_stream_matches(R"([{"name": "a", "arguments": {"k": 2}}])",
                        OutputFormat{ToolFormat::Mistral, false, true});
}

TEST(ToolCalls, Llama3StreamMatchesWholeParse) {
  const std::string two =
      R"(<|python_tag|>{"name": "f", "parameters": {"q": "a;b}"}}; {"name": "g", "parameters": {}})";
  expect_stream_matches(two, kLlama);
  expect_stream_matches(R"({"name": "f", "arguments": {"x": [1, 2]}})", kLlama);
  expect_stream_matches("<|pyramid, not the tag", kLlama);  // held while it may be the tag
  // Both calls stream as they come: announced, and their arguments sent, before the end.
  OutputStream s(kLlama);
  std::vector<std::string> names;
  std::string args;
  for (char c : two) {
    for (const ToolCallDelta& d : s.add(std::string(1, c)).calls) {
      if (d.first) names.push_back(d.name);
      args += d.arguments;
    }
  }
  EXPECT_EQ(names, (std::vector<std::string>{"f", "g"}));
  EXPECT_EQ(args, R"({"q": "a;b}"}{})");
  EXPECT_TRUE(s.finish().calls.empty());
}

TEST(ToolCalls, ArgumentsStreamAsTheyCome) {
  OutputStream s(kHermes);
  OutputStream::Delta d = s.add("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"ci");
  ASSERT_EQ(d.calls.size(), 2u);  // the first delta, then the arguments so far
  EXPECT_TRUE(d.calls[0].first);
  EXPECT_EQ(d.calls[0].name, "get_weather");
  EXPECT_TRUE(d.calls[0].id.starts_with("call_"));
  EXPECT_EQ(d.calls[1].arguments, "{\"ci");
  d = s.add("ty\": \"Paris\"}}\n</tool_call>");
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_FALSE(d.calls[0].first);
  EXPECT_EQ(d.calls[0].arguments, "ty\": \"Paris\"}");
  d = s.finish();
  EXPECT_TRUE(d.calls.empty());  // nothing left: the call was streamed
  EXPECT_TRUE(s.has_calls());
}

TEST(ToolCalls, ACallTheEndCutIsNotContent) {
  // Hermes: the call went out as far as it was written; text and calls before it are read.
  OutputStream s(kHermes);
  std::string content;
  int firsts = 0;
  for (const char* piece :
       {"Sure.<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>",
        "<tool_call>\n{\"name\": \"Write\", \"arguments\": {\"content\": \"line"}) {
    const OutputStream::Delta d = s.add(piece);
    content += d.content;
    for (const ToolCallDelta& c : d.calls) firsts += c.first;
  }
  EXPECT_FALSE(s.call_cut());
  const OutputStream::Delta d = s.finish();
  EXPECT_TRUE(s.call_cut());
  EXPECT_EQ(content + d.content, "Sure.");
  for (const ToolCallDelta& c : d.calls) firsts += c.first;
  EXPECT_EQ(firsts, 2);  // a and Write, each announced once

  // Mistral's list cut inside its second call: nothing after the streamed calls is content.
  OutputStream m(OutputFormat{ToolFormat::Mistral, false});
  m.add(
      "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", "
      "\"arguments\": {\"y\": ");
  const OutputStream::Delta md = m.finish();
  EXPECT_TRUE(m.call_cut());
  EXPECT_EQ(md.content, "");
  EXPECT_TRUE(md.calls.empty());

  // Closed arguments are no cut, even without the closing tag.
  OutputStream c(kHermes);
  c.add("<tool_call>{\"name\": \"a\", \"arguments\": {}}");
  c.finish();
  EXPECT_FALSE(c.call_cut());
}

// Found by test_tool_call_random.cc: a call names its function (an empty name is content), and
// a second <think> block after the first is the answer's text, streamed or whole.
TEST(ToolCalls, RandomMutationFindings) {
  const ParsedOutput p = parse_output(R"({"name": "", "parameters": {"a": 1}})", kLlama);
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, R"({"name": "", "parameters": {"a": 1}})");
  OutputFormat forced = kHermes;
  forced.forced_calls = true;
  expect_stream_matches("<think>x</think><think>y</think>A", forced);
  // Nor is a streamed header with an empty name a call (review of 2026-12-07).
  expect_stream_matches("<tool_call>{\"name\": \"\", \"arguments\": {\"a\": 1}}</tool_call>",
                        kHermes);
}

TEST(ToolCalls, StreamSendsContentBeforeTheCall) {
  OutputStream s(kHermes);
  // "<tool" held: it may be a tag; the blank too, until text follows it.
  EXPECT_EQ(s.add("Hello <tool").content, "Hello");
  EXPECT_EQ(s.add("_call>{\"name\": \"a\"}").content, "");
  const OutputStream::Delta d = s.finish();
  ASSERT_EQ(d.calls.size(), 1u);  // no "arguments": not streamed, sent whole at the end
  EXPECT_TRUE(d.calls[0].first);
  EXPECT_EQ(d.calls[0].arguments, "{}");
}

}  // namespace
}  // namespace nc::server

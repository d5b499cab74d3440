// Client bodies are untrusted: the request parsers of every API (chat and completions, the
// Responses API, Anthropic's Messages and count_tokens, /tokenize) fed random mutations of valid
// bodies (a value replaced by one of another type, a key dropped, a known field added with a
// random value, deep nesting, strings that spell control tokens). Each must either give a
// request the engine's own validation accepts or throw ApiError with a 4xx status, never
// anything else (a 500). Chat requests that parse are then rendered as the server renders them
// (the tools path: the model's Jinja template, chat_template_kwargs, continue_final_message)
// through real templates, which may refuse them only with nc::Error. ASan runs this too.
#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "server/anthropic_request.h"
#include "server/api_error.h"
#include "server/request_parser.h"
#include "server/responses_request.h"
#include "server/tool_calls.h"
#include "server/tool_request.h"
#include "tokenizer/chat_template.h"

namespace nc::server::test_request_random {
namespace {

using ojson = nlohmann::ordered_json;

const char* const kSeeds[] = {
    R"({"model": "m", "messages": [{"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
          "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "assistant", "content": "The answer is"}],
      "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
        "properties": {"a": {"type": "integer"}}}}}],
      "tool_choice": "auto", "continue_final_message": true, "add_generation_prompt": false,
      "chat_template_kwargs": {"enable_thinking": false}, "max_tokens": 5, "temperature": 0.5,
      "stop": ["x"], "logprobs": true, "top_logprobs": 2, "n": 1, "stream": true,
      "stream_options": {"include_usage": true}, "response_format": {"type": "json_object"}})",
    R"({"model": "m", "prompt": "hello", "max_tokens": 4, "echo": true, "logprobs": 1,
        "best_of": 2, "n": 1, "stop_token_ids": [1], "logit_bias": {"5": -100}})",
    R"({"model": "m", "instructions": "be brief", "previous_response_id": "resp_1",
        "input": [{"role": "user", "content": "hi"},
                  {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": "c1", "output": "ok"}],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "max_output_tokens": 8, "text": {"format": {"type": "text"}}})",
    R"({"model": "m", "max_tokens": 16, "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
                       {"type": "tool_result", "tool_use_id": "t1", "content": "x"}]},
                     {"role": "assistant", "content": [{"type": "text", "text": "Sure, "},
                       {"type": "tool_use", "id": "t2", "name": "f", "input": {"a": 1}}]},
                     {"role": "assistant", "content": "The"}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "thinking": {"type": "disabled"}, "stop_sequences": ["END"], "temperature": 0.2})",
};

// Values of every type, some hostile.
ojson random_value(std::mt19937& rng) {
  switch (std::uniform_int_distribution<int>(0, 11)(rng)) {
    case 0:
      return nullptr;
    case 1:
      return true;
    case 2:
      return -1;
    case 3:
      return 1e300;
    case 4:
      return "<|im_start|>system";
    case 5:
      return "";
    case 6:
      return ojson::array();
    case 7:
      return ojson::object();
    case 8:
      return ojson::parse(R"([{"type": "text", "text": "x"}])");
    case 9:
      return ojson::parse(R"({"role": "assistant", "content": null})");
    case 10: {
      ojson deep = 1;
      for (int i = 0; i < 70; ++i) deep = ojson::array({deep});
      return deep;
    }
    default:
      return "\xff\xfe";
  }
}

const char* const kFields[] = {"messages",
                               "tools",
                               "tool_choice",
                               "continue_final_message",
                               "add_generation_prompt",
                               "chat_template_kwargs",
                               "input",
                               "previous_response_id",
                               "prompt",
                               "max_tokens",
                               "n",
                               "best_of",
                               "logprobs",
                               "response_format",
                               "stream_options",
                               "thinking",
                               "system",
                               "content",
                               "role",
                               "tool_calls",
                               "arguments",
                               "call_id",
                               "type",
                               "name",
                               "parameters",
                               "input_schema"};

// One random edit somewhere in j (its objects and arrays, walked at random).
void mutate(ojson& j, std::mt19937& rng, int depth = 0) {
  auto coin = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng) == 0; };
  if ((!j.is_object() && !j.is_array()) || j.empty() || depth > 6 || coin(4)) {
    if (j.is_object() && coin(2)) {
      j[kFields[std::uniform_int_distribution<size_t>(0, std::size(kFields) - 1)(rng)]] =
          random_value(rng);
    } else {
      j = random_value(rng);
    }
    return;
  }
  const size_t k = std::uniform_int_distribution<size_t>(0, j.size() - 1)(rng);
  if (j.is_object()) {
    auto it = std::next(j.begin(), std::ptrdiff_t(k));
    if (coin(5)) {
      j.erase(it);
      return;
    }
    mutate(it.value(), rng, depth + 1);
  } else {
    mutate(j[k], rng, depth + 1);
  }
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The templates chats render through: a plain ChatML one, and real ones when unpacked.
std::vector<std::string> templates() {
  std::vector<std::string> out = {
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"};
  const std::string dir = NC_FIXTURES_DIR "/../../third_party/llama-jinja/templates/";
  for (const char* name : {"Qwen-Qwen3-0.6B.jinja", "deepseek-ai-DeepSeek-V3.1.jinja",
                           "Kimi-K2-Instruct.jinja", "meta-llama-Llama-3.1-8B-Instruct.jinja",
                           "GLM-4.6.jinja", "deepseek-ai-DeepSeek-V3.2.jinja"}) {
    const std::string t = read_file(dir + name);
    if (!t.empty()) out.push_back(t);
  }
  return out;
}

// A parsed chat rendered as the server renders its tools path.
void render(const ParsedRequest& r, const std::vector<std::string>& tmpls) {
  if (!r.tools.active) return;
  for (const std::string& t : tmpls) {
    try {
      RenderedChat c = render_chat_template_json(
          t, template_messages(r.tools, template_tool_format(t)), r.tools.tools,
          r.prompt_ending.add_generation_prompt, "<s>", "</s>", 1, r.tools.template_kwargs);
      if (r.prompt_ending.continue_final_message && !r.tools.messages.empty()) {
        const ojson& last = r.tools.messages.back();
        const auto content = last.find("content");
        continue_final_message(
            c, content != last.end() && content->is_string() ? content->get<std::string>() : "");
      }
      for (const TextSpan& s : c.markers) ASSERT_LE(s.offset + s.length, c.text.size());
    } catch (const Error&) {
      // a template's refusal or a bad option: a 400 at the server
    }
  }
}

template <typename Parse>
void expect_4xx_or_valid(const std::string& body, Parse parse) {
  try {
    parse(body);
  } catch (const ApiError& e) {
    EXPECT_GE(e.status(), 400) << body;
    EXPECT_LT(e.status(), 500) << body << ": " << e.what();
  }
}

std::optional<ojson> stored_conversation(const std::string& id, std::string& missing) {
  if (id != "resp_1") {
    missing = id;
    return std::nullopt;
  }
  return ojson::parse(R"([{"role": "user", "content": "before"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "c0", "type": "function",
        "function": {"name": "f", "arguments": "{}"}}]}])");
}

TEST(RequestRandom, MutatedBodiesAreRequestsOr400s) {
  std::mt19937 rng(20261207);
  const std::vector<std::string> tmpls = templates();
  const HistoryLookup history = stored_conversation;
  for (int round = 0; round < 1500; ++round) {
    ojson j = ojson::parse(kSeeds[size_t(round) % std::size(kSeeds)]);
    const int edits = std::uniform_int_distribution<int>(1, 3)(rng);
    for (int e = 0; e < edits; ++e) mutate(j, rng);
    const std::string body = j.dump(-1, ' ', false, ojson::error_handler_t::replace);
    SCOPED_TRACE(body.substr(0, 400));
    for (ApiKind kind : {ApiKind::Chat, ApiKind::Completion}) {
      expect_4xx_or_valid(body, [&](const std::string& b) {
        const ParsedRequest r = parse_request(kind, b);
        r.sampling.validate();
        if (kind == ApiKind::Chat) render(r, tmpls);
      });
    }
    expect_4xx_or_valid(body, [&](const std::string& b) {
      const ResponsesRequest r = parse_responses_request(b, {}, history);
      r.chat.sampling.validate();
      render(r.chat, tmpls);
    });
    expect_4xx_or_valid(body, [&](const std::string& b) {
      const ParsedRequest r = parse_anthropic_request(b);
      r.sampling.validate();
      render(r, tmpls);
    });
    expect_4xx_or_valid(body, [](const std::string& b) { (void)parse_anthropic_count(b); });
    expect_4xx_or_valid(body, [](const std::string& b) { (void)parse_tokenize(b); });
    if (testing::Test::HasFailure()) return;
  }
}

}  // namespace
}  // namespace nc::server::test_request_random

// What a chat model's output text means: a reasoning block, the answer's content, tool calls.
//
// The format is chosen per request from the model's chat template text: Hermes/Qwen
// `<tool_call>{"name", "arguments"}</tool_call>` when the template writes "<tool_call>", Llama 3's
// bare JSON `{"name", "parameters"}` when it writes "\"parameters\"" or <|python_tag|>, and
// Hermes for a template that shows neither (the most common format). Tool calls are only looked
// for when the request has tools and tool_choice is not "none".
//
// Reasoning: an output that starts with `<think>` (Qwen3, DeepSeek-R1 distills) has the block's
// text as reasoning_content, stripped from content; a prompt that ends inside `<think>` (R1
// distills' generation prompt) makes the output start in reasoning until `</think>`.
//
// parse_output() reads a whole text. OutputStream does the same incrementally for streaming:
// reasoning and content go out as they come (holding back only text that may be the start of a
// tag), and text from the first tool call on is held and parsed at the end, so a call is
// streamed whole in one delta (OpenAI's first-delta shape with the full arguments).
#pragma once
#include <string>
#include <vector>

namespace nc::server {

enum class ToolFormat { None, Hermes, Llama3Json };

struct OutputFormat {
  ToolFormat tools = ToolFormat::None;
  bool starts_in_think = false;
};

// From the template's text and the rendered prompt (does it end inside <think>?); tools_on: the
// request has tools and tool_choice is not "none".
OutputFormat detect_output_format(const std::string& template_text, const std::string& prompt_text,
                                  bool tools_on);

struct ToolCall {
  std::string id;  // "call_" and 24 random hex digits
  std::string name;
  std::string arguments;  // a JSON object's text
};

struct ParsedOutput {
  std::string reasoning;
  std::string content;  // text outside the reasoning block and the calls, trimmed
  std::vector<ToolCall> calls;
};

ParsedOutput parse_output(const std::string& text, const OutputFormat& f);

std::string new_tool_call_id();

class OutputStream {
 public:
  explicit OutputStream(const OutputFormat& f);
  struct Delta {
    std::string reasoning;
    std::string content;
    std::vector<ToolCall> calls;  // only from finish()
  };
  Delta add(const std::string& text_delta);
  Delta finish();  // what was held back, and the tool calls
  bool has_calls() const { return saw_calls_; }

 private:
  void route(Delta& d, bool at_end);

  OutputFormat f_;
  enum class State { Start, Think, Content, Held } state_;
  std::string pending_;  // not yet routed
  std::string held_;     // State::Held: from the first tool call on
  bool saw_calls_ = false;
};

}  // namespace nc::server

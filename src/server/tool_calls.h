// What a chat model's output text means: a reasoning block, the answer's content, tool calls.
//
// The format is chosen per request from the model's chat template text: Hermes/Qwen
// `<tool_call>{"name", "arguments"}</tool_call>` when the template writes "<tool_call>", Llama 3's
// bare JSON `{"name", "parameters"}` when it writes "\"parameters\"" or <|python_tag|>, Mistral's
// `[TOOL_CALLS]` (a JSON list of calls, or `name[ARGS]{...}` per call) when it writes
// "[TOOL_CALLS]" (checked before Llama 3's; the request then keeps special tokens in its text so
// that the control token reaches the parser), and Hermes for a template that shows neither (the
// most common format). Qwen3-Coder's and Qwen3.5's XML calls (`<tool_call><function=name>
// <parameter=p>value</parameter></function></tool_call>`, server/tool_call_xml.h) when the
// template writes "<function=" and "<parameter="; a forced call there is Hermes' JSON body (the
// grammar's), which the XML format's parser reads too. GLM-4.5/4.6/4.7's (`<tool_call>name
// <arg_key>k</arg_key><arg_value>v</arg_value></tool_call>`, server/tool_call_xml.h) when it
// writes "<arg_key>", read and forced the same way. DeepSeek's (V3, R1, V3.1) and Kimi-K2's
// sections of calls between control tokens (server/tool_call_sections.h) when the template
// writes the section's first token (special tokens are then kept in the text, as for Mistral); a
// forced call there is Hermes' tag with its JSON body (the grammar's; those tokens may be
// special, which a grammar over text cannot write). DeepSeek-V3.2's and V4's DSML blocks
// (server/tool_call_dsml.h) when the template writes "｜DSML｜", kept and forced the same way. Tool
// calls are only looked for when the request
// has tools and tool_choice is not "none".
//
// Reasoning: an output that starts with `<think>` (Qwen3, DeepSeek-R1 distills) has the block's
// text as reasoning_content, stripped from content; a prompt that ends inside `<think>` (R1
// distills' generation prompt) makes the output start in reasoning until `</think>`. Mistral's
// reasoning models write [THINK] ... [/THINK] instead, read the same way when their template
// writes [THINK].
//
// parse_output() reads a whole text. OutputStream does the same incrementally for streaming:
// reasoning and content go out as they come (holding back only text that may be the start of a
// tag), and text from the first tool call on is held: Hermes, Mistral and Llama 3 calls stream
// as OpenAI streams them (a first delta with index, id and name, then argument fragments as they
// come: server/tool_call_stream.h; XML, GLM and DSML calls go out whole at the end, unless forced:
// the grammar's Hermes body streams as Hermes' does); the held
// text is parsed at the end, which sends any call not streamed whole (and the content outside the
// calls).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nc::server {

enum class ToolFormat { None, Hermes, Llama3Json, Mistral, QwenXml, GlmXml, DeepSeek, Kimi, Dsml };

struct ParamTypeTable;  // server/tool_call_xml.h

struct OutputFormat {
  ToolFormat tools = ToolFormat::None;
  bool starts_in_think = false;
  // tool_choice forced a call through a grammar (server/structured_request.h): for Mistral the
  // output is the call list without its [TOOL_CALLS] control token.
  bool forced_calls = false;
  // Kimi: how many tool calls the request's history holds (its ids number on from there:
  // server/tool_call_id.h).
  int first_call_index = 0;
  // The reasoning block's markers: <think> and </think>, or Mistral's [THINK] and [/THINK]
  // (Magistral, Ministral's reasoning models; control tokens, kept in the text) when the template
  // writes [THINK].
  std::string_view think_open = "<think>";
  std::string_view think_close = "</think>";
  // QwenXml, GlmXml: the request's tools' parameter types, which type the calls' values (may be
  // null).
  std::shared_ptr<const ParamTypeTable> param_types = nullptr;
};

// The tool-call format a chat template writes (the rules above), whether or not the request has
// tools: the ids of earlier calls are fitted to it (server/tool_call_id.h).
ToolFormat template_tool_format(const std::string& template_text);

// From the template's text and the rendered prompt (does it end inside <think>?); tools_on: the
// request has tools and tool_choice is not "none".
OutputFormat detect_output_format(const std::string& template_text, const std::string& prompt_text,
                                  bool tools_on);

struct ToolCall {
  std::string id;  // the format's shape (server/tool_call_id.h), distinct within the output
  std::string name;
  std::string arguments;  // a JSON object's text
  // Hermes: where its <tool_call> tag starts in the parsed text (matches a streamed call to it).
  size_t at = std::string::npos;
};

struct ParsedOutput {
  std::string reasoning;
  std::string content;  // text outside the reasoning block and the calls, trimmed
  std::vector<ToolCall> calls;
};

ParsedOutput parse_output(const std::string& text, const OutputFormat& f);

// `s` without its leading and trailing blanks (space, tab, CR, LF), as the parsers trim.
std::string_view trim_blanks(std::string_view s);

// Qwen3-Coder's and GLM's: <tool_call> around tagged arguments, typed by the request's schemas.
bool is_tagged_format(ToolFormat f);

// The formats whose markup may be special tokens, which the output's text must then keep for the
// parser to see: Mistral's [TOOL_CALLS] is a control token; DeepSeek's, Kimi's, DSML's and
// GLM's tags may be special in their tokenizers.
bool keeps_special_tokens(ToolFormat f);
// The same for an output: its tool format's, or Mistral's [THINK] markers.
bool keeps_special_tokens(const OutputFormat& f);

// The formats whose calls a stream sends whole once the output is parsed (tagged and DSML ones),
// unless forced (the grammar's Hermes body streams as Hermes' does).
bool calls_sent_whole(ToolFormat f);

// One streamed piece of a tool call (OpenAI's delta.tool_calls entry).
struct ToolCallDelta {
  int index = 0;
  bool first = false;  // carries id, type and name
  std::string id;
  std::string name;
  std::string arguments;  // a fragment (the whole text for a call sent whole)
};

class CallArgStreamer;

class OutputStream {
 public:
  explicit OutputStream(const OutputFormat& f);
  ~OutputStream();
  OutputStream(OutputStream&&) noexcept;
  struct Delta {
    std::string reasoning;
    std::string content;
    std::vector<ToolCallDelta> calls;
  };
  Delta add(const std::string& text_delta);
  // What was held back, and the tool calls not streamed yet. A call the end cut inside its
  // arguments went out as far as it was written; its text is not content (call_cut()), and for
  // Mistral and Llama 3, whose calls are the whole output, nothing after it is read.
  Delta finish();
  bool has_calls() const { return saw_calls_; }
  bool call_cut() const { return call_cut_; }
  // Inside the reasoning block (after its <think>, before its </think>).
  bool in_think() const { return state_ == State::Think; }

 private:
  void route(Delta& d, bool at_end);
  void stream_calls(Delta& d);
  // Content as the whole parse gives it: where that trims (tools or a reasoning block), leading
  // and trailing whitespace is held back until text follows it.
  void send_content(Delta& d, std::string_view text);

  OutputFormat f_;
  enum class State { Start, Think, Content, Held } state_;
  std::string pending_;  // not yet routed
  std::string held_;     // State::Held: from the first tool call on
  bool saw_calls_ = false;
  bool call_cut_ = false;
  bool trims_ = false;         // the whole parse trims the content
  bool sent_content_ = false;  // some content went out
  std::string blanks_;         // trailing whitespace held back (trims_)
  std::unique_ptr<CallArgStreamer> calls_;
};

}  // namespace nc::server

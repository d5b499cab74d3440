// Tool calls written as a section of calls between control tokens (server/tool_calls.h):
//
//   DeepSeek (V3, R1, V3.1 and later chat modes; ToolFormat::DeepSeek):
//     <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>BODY<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
//     BODY: function<｜tool▁sep｜>NAME\n```json\n{...}\n```  (V3, R1: the call's type first)
//       or  NAME<｜tool▁sep｜>{...}                          (V3.1 and on)
//   Kimi-K2 (ToolFormat::Kimi):
//     <|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:K<|tool_call_argument_begin|>
//     {...}<|tool_call_end|>...<|tool_calls_section_end|>
//
// Told from the template: these templates write the tokens for earlier calls. A DeepSeek body
// before its separator of exactly "function", followed by no JSON object, is V3's shape; any
// other is V3.1's (so a V3.1 tool named "function" still reads right). Kimi's call id
// "functions.NAME:K" gives the name (the server gives ids of that shape, numbered its own way:
// server/tool_call_id.h). The arguments must be a JSON object (nested at most kMaxJsonDepth:
// server/json_fields.h). What is not a call stays in the content as written, but for a last call
// the end cut short (no end token: max_tokens), which is dropped; text before the section and
// after it is content too. The tokens may be special in the tokenizer: the server keeps special
// tokens in the text for these formats (engine_loop.cc). Streamed answers stream each call's
// arguments as they come (server/tool_call_stream.h); a forced call is the grammar's Hermes tag (a
// grammar over text cannot write special tokens), which tool_calls.cc reads.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "server/tool_calls.h"

namespace nc::server {

inline bool is_section_format(ToolFormat f) {
  return f == ToolFormat::DeepSeek || f == ToolFormat::Kimi;
}

// DeepSeek or Kimi when the template writes that format's section token, else None.
ToolFormat section_template_format(std::string_view template_text);

// The token that opens the format's section of calls (OutputStream holds the text from it on),
// and the one that opens each call (CallArgStreamer reads a call's header after it).
std::string_view section_begin_token(ToolFormat format);
std::string_view section_call_token(ToolFormat format);

// The header of a call whose body (after its call token) starts `body`: the function's name, as
// the whole parse reads it, and where its arguments' '{' is. nullopt while the header is not
// whole yet, or when it is no call's (linear in body: it is retried as the stream grows). The
// whole parse reads each call's header with it too.
struct SectionCallHeader {
  std::string name;
  size_t args_at = 0;
  bool fenced = false;  // DeepSeek V3's ```json block: the arguments end at its closing fence
};
std::optional<SectionCallHeader> section_call_header(std::string_view body, ToolFormat format);

// The tokens that end a call and the section (a streamed call's arguments stop at them).
std::string_view section_call_end_token(ToolFormat format);
std::string_view section_end_token(ToolFormat format);

// Reads the calls of `text` (after any reasoning block) into out.calls (each call's `at`: where
// its call-begin token starts) and the rest into out.content (untrimmed: parse_output trims it).
// format: DeepSeek or Kimi.
void parse_section_calls(std::string_view text, ToolFormat format, ParsedOutput& out);

}  // namespace nc::server

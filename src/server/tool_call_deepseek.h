// DeepSeek's tool calls (ToolFormat::DeepSeek, server/tool_calls.h): a section of calls between
// the tokens <｜tool▁calls▁begin｜> and <｜tool▁calls▁end｜>, each call between
// <｜tool▁call▁begin｜> and <｜tool▁call▁end｜>, in one of two shapes:
//   V3, R1:      function<｜tool▁sep｜>NAME\n```json\n{...}\n```      (the call's type first)
//   V3.1 and on: NAME<｜tool▁sep｜>{...}
// Told from the template: DeepSeek's templates write these tokens for earlier calls. A body
// before its separator of exactly "function", followed by no JSON object, is V3's shape; any
// other is V3.1's (so a V3.1 tool named "function" still reads right). The arguments must be a
// JSON object (nested at most kMaxJsonDepth: server/json_fields.h). What is not a call stays in
// the content as written, but for a last call the end cut short (no end token: max_tokens),
// which is dropped; text before the section and after it is content too. The tokens may
// be special in the tokenizer: the server keeps special tokens in the text for this format
// (engine_loop.cc). Streamed answers send the calls whole at the end, as for Qwen's XML calls.
#pragma once
#include <string_view>

#include "server/tool_calls.h"

namespace nc::server {

// The token that opens the section of calls (OutputStream holds the text from it on).
inline constexpr std::string_view kDeepSeekCallsBegin = "<｜tool▁calls▁begin｜>";

// Whether a chat template writes DeepSeek's tool-call tokens.
bool deepseek_template(std::string_view template_text);

// Reads the calls of `text` (after any reasoning block) into out.calls (each call's `at`: where
// its <｜tool▁call▁begin｜> starts) and the rest into out.content, trimmed.
void parse_deepseek(std::string_view text, ParsedOutput& out);

}  // namespace nc::server

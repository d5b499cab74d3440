// POST /v1/messages and /v1/messages/count_tokens (Anthropic's Messages API: what Claude Code and
// the anthropic SDKs call, as llama.cpp's and vLLM's servers serve it) read as the chat request
// they amount to, then served exactly as /v1/chat/completions is (the same template, tools,
// tool-call formats, reasoning blocks and sampling):
//   system (a string or text blocks)  -> a leading system message
//   messages: user text blocks        -> the user message's text (blocks joined with "\n")
//             user tool_result blocks -> tool messages (tool_call_id = tool_use_id), before
//                                        the user's text of the same turn
//             assistant text blocks   -> the assistant message's content
//             assistant tool_use      -> its tool_calls (input object -> arguments JSON text)
//             thinking blocks         -> skipped (chat templates drop earlier reasoning)
//   tools [{name, description, input_schema}] -> chat's function tools
//   tool_choice auto / any / tool {name} / none -> "auto" / "required" / the named function /
//                                     "none"; disable_parallel_tool_use -> parallel_tool_calls
//   max_tokens (required; a bound: lowered to what the context leaves after the prompt, since
//   clients send their model's output limit), temperature, top_p, top_k, stream;
//   stop_sequences -> stop; output_config.format (json_schema) -> response_format;
//   metadata.user_id -> user; thinking.type enabled / disabled -> chat_template_kwargs
//   {enable_thinking, thinking} (Qwen3's and DeepSeek V3.1's switches; other types, and
//   budget_tokens, leave the template's default).
// Blocks the model cannot read (image, document, search_result, ...) become a text placeholder
// ("[image omitted: this model reads text only]"), not an error: agents resend the whole history,
// so one refused turn would fail every later one. A tool_result with is_error is prefixed
// "Error: ". A last assistant turn (prefill) is continued (chat's continue_final_message): the
// answer is the text after it; a prefill without text is a 400. Refused with 400 (unsupported):
// tools with a type other than "custom" (web_search, code_execution, bash_..., ...). Errors name
// the Anthropic field.
#pragma once
#include <string>
#include <string_view>

#include "server/api_error.h"
#include "server/request_parser.h"

namespace nc::server {

// Throws ApiError (400) naming the bad field.
ParsedRequest parse_anthropic_request(std::string_view body, const ParseLimits& limits = {});

// count_tokens: the same body (max_tokens may be absent) as the chat rendering /tokenize does.
TokenizeRequest parse_anthropic_count(std::string_view body);

// Anthropic's error object: {"type": "error", "error": {"type", "message"}}, the type by status
// (invalid_request_error, authentication_error, not_found_error, rate_limit_error, api_error,
// overloaded_error).
nlohmann::json anthropic_error_json(const ApiError& e);

}  // namespace nc::server

// POST /v1/responses (OpenAI's Responses API) read as the chat request it amounts to.
//
// The body is translated into a chat completions body and validated by parse_request(Chat), so
// that the two APIs share every check, the chat template, tools and structured output:
//   instructions                  -> a leading system message
//   input (a string)              -> one user message
//   input items: messages         -> messages (content parts input_text / output_text / text)
//                function_call    -> an assistant message's tool_calls (consecutive calls, and a
//                                    call after an assistant message, join that message)
//                function_call_output -> a tool message with its tool_call_id
//                reasoning        -> skipped (chat templates drop earlier reasoning)
//   tools [{type: function, name, description, parameters, strict}] -> chat's nested form
//   tool_choice {type: function, name} -> {type: function, function: {name}}
//   text.format (text, json_object, json_schema) -> response_format
//   max_output_tokens -> max_completion_tokens; top_logprobs -> logprobs + top_logprobs
//   temperature, top_p, parallel_tool_calls, user, and the vLLM-style sampling extensions the
//   chat parser reads (top_k, min_p, seed, stop, penalties, logit_bias, ...) pass as they are.
// A chat parser error names the Responses field (max_output_tokens, text.format, input[i],
// tools[i].name, ...), not the chat one.
//
// Refused with 400 unsupported_parameter, since this server keeps no state between requests and
// serves no hosted tools: previous_response_id, conversation, background: true, prompt (stored
// prompt templates), item_reference items, non-function tools (web_search, file_search, ...),
// image, file and audio content, and include values other than message.output_text.logprobs
// and reasoning.encrypted_content. The chat API's names (max_tokens, max_completion_tokens,
// messages, response_format) are refused with a 400 naming the Responses field to use. store
// and reasoning are accepted and ignored (the response says store: false). n is always 1.
#pragma once
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/request_parser.h"

namespace nc::server {

struct ResponsesRequest {
  ParsedRequest chat;  // the equivalent chat request, validated
  // What the response object repeats from the request: instructions, tools (as given),
  // tool_choice, parallel_tool_calls, temperature, top_p, max_output_tokens, text, metadata,
  // top_logprobs, user (null or defaults where absent).
  nlohmann::json echo;
};

// Throws ApiError (400) naming the bad Responses field.
ResponsesRequest parse_responses_request(std::string_view body, const ParseLimits& limits = {});

// The Responses API's name for a chat request's field in an error ("max_completion_tokens" ->
// "max_output_tokens", "response_format..." -> "text.format", "messages..." -> "input", ...);
// other names are kept.
std::string responses_param(const std::string& chat_param);

// The same error naming the Responses field.
ApiError as_responses_error(const ApiError& e);

}  // namespace nc::server

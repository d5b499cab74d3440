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
// previous_response_id continues a stored response's conversation (server/response_store.h): the
// chain's turns (each response's input and output) come before this request's input; earlier
// instructions do not carry over (OpenAI's rule). An id the store does not hold is a 400
// (previous_response_not_found); without a store (history lookup empty) it is unsupported.
//
// Refused with 400 unsupported_parameter, since this server keeps no other state and serves no
// hosted tools: conversation, background: true, prompt (stored
// prompt templates), item_reference items, non-function tools (web_search, file_search, ...),
// and include values other than message.output_text.logprobs and reasoning.encrypted_content.
// Image, file and audio content parts become a text placeholder ("[input_image omitted: this
// model reads text only]"): clients resend their history, so a refusal would fail every later
// turn. The chat API's names (max_tokens, max_completion_tokens,
// messages, response_format) are refused with a 400 naming the Responses field to use. store
// (default true) says whether the response is kept for later requests; reasoning is accepted and
// ignored. n is always 1.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/request_parser.h"

namespace nc::server {

struct ResponsesRequest {
  ParsedRequest chat;  // the equivalent chat request, validated
  // This request's input in chat form: what the store keeps as its turn, with its output.
  nlohmann::ordered_json input;
  std::string previous_response_id;  // "" for none
  bool store = true;
  // What the response object repeats from the request: instructions, tools (as given),
  // tool_choice, parallel_tool_calls, temperature, top_p, max_output_tokens, text, metadata,
  // top_logprobs, user (null or defaults where absent).
  nlohmann::json echo;
};

// A stored response's conversation by id (nullopt: not held; then `missing` names the link of
// its chain that is not, which may be an earlier one).
using HistoryLookup = std::function<std::optional<nlohmann::ordered_json>(
    const std::string& response_id, std::string& missing)>;

// Throws ApiError (400) naming the bad Responses field.
ResponsesRequest parse_responses_request(std::string_view body, const ParseLimits& limits = {},
                                         const HistoryLookup& history = {});

// The conversation a stored response continues from: `conversation` (its chat messages) and its
// output as an assistant turn (the message items' text as content, function_call items as
// tool_calls; reasoning is not carried, as chat templates drop it).
nlohmann::ordered_json with_output_turn(nlohmann::ordered_json conversation,
                                        const nlohmann::json& response);

// The Responses API's name for a chat request's field in an error ("max_completion_tokens" ->
// "max_output_tokens", "response_format..." -> "text.format", "messages..." -> "input", ...);
// other names are kept.
std::string responses_param(const std::string& chat_param);

// The same error naming the Responses field.
ApiError as_responses_error(const ApiError& e);

}  // namespace nc::server

// The JSON objects of OpenAI's chat.completion / text_completion responses and their streaming
// chunks, with their choices and log-probabilities.
//
// Log-probabilities come as LogprobToken lists (token text already decoded by the engine thread)
// and are shaped per API: chat's {"content": [{token, logprob, bytes, top_logprobs}]} and
// completions' {tokens, token_logprobs, top_logprobs, text_offset} (token_logprobs null for
// the first prompt token of an echo, as OpenAI). A -inf log-probability (a token the model gives
// no chance) is written as -9999.0, as vLLM does, since JSON has no infinity.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/request_parser.h"
#include "server/tool_calls.h"

namespace nc::server {

struct ResponseMeta {
  ApiKind kind = ApiKind::Chat;
  std::string id;  // "chatcmpl-..." or "cmpl-..."
  int64_t created = 0;
  std::string model;
};

// One token with its log-probability (none: the first prompt token) and the top alternatives.
struct LogprobToken {
  int32_t id = 0;
  std::string text;
  std::optional<float> logprob;
  std::vector<std::pair<std::string, float>> top;  // most likely first
};

// One choice of a whole response.
struct ChoiceResult {
  int index = 0;
  std::string text;
  std::string finish_reason;
  // vLLM's stop_reason: the stop string that ended the choice, else the stop_token_ids id that
  // did, else null.
  nlohmann::json stop_reason;
  nlohmann::json logprobs;  // null when not asked
  // Chat: what parse_output read from the text (text is then the content; null when empty and
  // there are calls).
  std::string reasoning;
  std::vector<ToolCall> calls;
};

// Chat: OpenAI's tool_calls array (delta form with "index" when stream).
nlohmann::json tool_calls_json(const std::vector<ToolCall>& calls, bool stream);
// Stream: the delta.tool_calls entries of streamed call pieces (id, type and name on a call's
// first piece only).
nlohmann::json tool_call_deltas_json(const std::vector<ToolCallDelta>& deltas);
// A chat streaming chunk with this delta object.
nlohmann::json delta_chunk(const ResponseMeta& m, nlohmann::json delta, bool with_usage_null,
                           int index, const nlohmann::json& logprobs = nullptr);

// A fresh id: the prefix and 24 hex digits from the kernel's CSPRNG (unpredictable).
std::string random_id(std::string prefix);
// A fresh response id for the kind ("chatcmpl-" or "cmpl-" and 24 hex digits).
std::string new_response_id(ApiKind kind);

nlohmann::json usage_json(int prompt_tokens, int completion_tokens);

// Chat's logprobs object for these tokens.
nlohmann::json chat_logprobs_json(const std::vector<LogprobToken>& tokens);
// Completions' logprobs object; text_offset counts from `offset` (the text before the first
// token: the prompt's length when it is not echoed, else 0), summing the tokens' text lengths
// (text_offset_length).
nlohmann::json completion_logprobs_json(const std::vector<LogprobToken>& tokens, size_t offset);
// The length of the text the tokens' texts make, in text_offset_length's unit.
size_t tokens_text_size(const std::vector<LogprobToken>& tokens);
// Completions' text offsets count characters (Unicode code points, as OpenAI's and vLLM's
// Python strings do), not UTF-8 bytes: the code points that start in `text`.
size_t text_offset_length(std::string_view text);

// The whole (non-streaming) response.
nlohmann::json completion_response(const ResponseMeta& m, const std::vector<ChoiceResult>& choices,
                                   int prompt_tokens, int completion_tokens);
nlohmann::json completion_response(const ResponseMeta& m, const std::string& text,
                                   const std::string& finish_reason, int prompt_tokens,
                                   int completion_tokens);

// One streaming chunk with one choice (its index). role_chunk: chat's first chunk of a choice
// (delta.role = assistant). finish_reason empty = null. with_usage_null: "usage": null (when
// include_usage is on). logprobs: the chunk's tokens' logprobs object, or null.
nlohmann::json stream_chunk(const ResponseMeta& m, const std::string& text,
                            const std::string& finish_reason, bool role_chunk, bool with_usage_null,
                            int index = 0, const nlohmann::json& logprobs = nullptr);

// The last chunk when include_usage is on: no choices, the usage.
nlohmann::json usage_chunk(const ResponseMeta& m, int prompt_tokens, int completion_tokens);

// "data: <json>\n\n"
std::string sse_event(const nlohmann::json& j);
// "event: <type>\ndata: <json>\n\n": a typed event, as the Responses and Messages APIs stream.
std::string typed_sse_event(const nlohmann::json& e);
std::string typed_sse_event(const nlohmann::ordered_json& e);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace nc::server

// The JSON objects of OpenAI's chat.completion / text_completion responses and their streaming
// chunks.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "server/request_parser.h"

namespace nc::server {

struct ResponseMeta {
  ApiKind kind = ApiKind::Chat;
  std::string id;  // "chatcmpl-..." or "cmpl-..."
  int64_t created = 0;
  std::string model;
};

// A fresh response id for the kind ("chatcmpl-" or "cmpl-" and 24 hex digits).
std::string new_response_id(ApiKind kind);

nlohmann::json usage_json(int prompt_tokens, int completion_tokens);

// The whole (non-streaming) response.
nlohmann::json completion_response(const ResponseMeta& m, const std::string& text,
                                   const std::string& finish_reason, int prompt_tokens,
                                   int completion_tokens);

// One streaming chunk with one choice. role_chunk: chat's first chunk (delta.role = assistant).
// finish_reason empty = null. with_usage_null: "usage": null (when include_usage is on).
nlohmann::json stream_chunk(const ResponseMeta& m, const std::string& text,
                            const std::string& finish_reason, bool role_chunk,
                            bool with_usage_null);

// The last chunk when include_usage is on: no choices, the usage.
nlohmann::json usage_chunk(const ResponseMeta& m, int prompt_tokens, int completion_tokens);

// "data: <json>\n\n"
std::string sse_event(const nlohmann::json& j);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace nc::server

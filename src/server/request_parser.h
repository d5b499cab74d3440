// Parsing and validating the JSON bodies of POST /v1/chat/completions and POST /v1/completions.
//
// A pure function of the body (no engine, no I/O) so that it can be fuzzed. Everything that can
// be checked without the tokenizer is checked here; the prompt length against the context is
// checked by the engine loop after tokenization. Every failure is an ApiError (400), never a
// crash; unknown fields are ignored, as OpenAI does. Known OpenAI fields that this server cannot
// honour (n > 1, logprobs, top_logprobs > 0, tools, logit_bias, echo, suffix, best_of > 1,
// response_format other than text) are rejected with a message naming them rather than silently
// ignored. stop_token_ids are checked against the vocabulary by the engine.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nanocascade/engine.h"

namespace nc::server {

enum class ApiKind : uint8_t { Chat, Completion };

struct ParsedRequest {
  ApiKind kind = ApiKind::Chat;
  std::string model;
  std::vector<ChatMessage> messages;  // Chat
  // Completion: a text prompt, or token ids when prompt_is_ids.
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  bool prompt_is_ids = false;
  // Completion: read special-token texts in the prompt as control tokens (the `parse_special`
  // field, as llama.cpp's tokenizer flag). Off: the prompt is ordinary text.
  bool parse_special = false;

  SamplingParams sampling;
  bool max_tokens_given = false;  // else the engine loop fills the rest of the context
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::string user;            // the `user` field (a session hint)
};

// Nesting deeper than this is rejected (bounds the parser's work on hostile input).
inline constexpr int kMaxJsonDepth = 64;
inline constexpr int kMaxStopStrings = 16;
inline constexpr int kMaxStopStringBytes = 1024;
inline constexpr int kMaxStopTokenIds = 1024;
// max_tokens above this is rejected here; the engine rejects anything above the context.
inline constexpr int64_t kMaxTokensLimit = int64_t(1) << 30;

// Throws ApiError (400) naming the bad field.
ParsedRequest parse_request(ApiKind kind, std::string_view body);

}  // namespace nc::server

// Parsing and validating the JSON bodies of POST /v1/chat/completions and POST /v1/completions.
//
// A pure function of the body and the server's limits (no engine, no I/O) so that it can be
// fuzzed. Everything that can be checked without the tokenizer is checked here; the prompt length
// against the context and logit_bias / stop_token_ids ids against the vocabulary are checked by
// the engine. Every failure is an ApiError (400), never a crash; unknown fields are ignored, as
// OpenAI does. Known OpenAI fields that this server cannot honour (functions, suffix) are
// rejected with a message naming them rather than silently ignored. Structured output
// (response_format and vLLM's fields) is read by server/structured_request.h; whether its grammar
// compiles is checked by the engine (Engine::compile_grammar, 400 naming structured_param).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nanocascade/engine.h"
#include "server/json_fields.h"  // kMaxJsonDepth
#include "server/structured_request.h"
#include "server/tool_request.h"

namespace nc::server {

enum class ApiKind : uint8_t { Chat, Completion };

struct ParsedRequest {
  ApiKind kind = ApiKind::Chat;
  std::string model;                  // empty: not given (the served model)
  std::vector<ChatMessage> messages;  // Chat
  ToolRequest tools;  // Chat: tools, tool_choice and tool turns (server/tool_request.h)
  // Chat: how the prompt ends (vLLM's add_generation_prompt and continue_final_message; the
  // Messages API's prefill continues the last assistant turn).
  ChatPromptOptions prompt_ending;
  // Completion: a text prompt, or token ids when prompt_is_ids.
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  bool prompt_is_ids = false;
  // Completion: a batch's further prompts (`prompt` a list of several), as prompt / prompt_ids
  // hold the first; each is its own engine request with the same parameters, answered together
  // (server/completion_batch.h).
  struct BatchPrompt {
    std::string text;
    std::vector<int32_t> ids;
    bool is_ids = false;
  };
  std::vector<BatchPrompt> more_prompts;
  // Completion: read special-token texts in the prompt as control tokens (the `parse_special`
  // field, as llama.cpp's tokenizer flag). Off: the prompt is ordinary text.
  bool parse_special = false;

  SamplingParams sampling;  // with logprobs, prompt_logprobs (echo), logit_bias, structured
  // The field that asked for structured output ("response_format", "guided_json", ...; set by
  // the server to "tool_choice" when tool_choice forces a call); "" for none.
  std::string structured_param;
  bool max_tokens_given = false;  // else the engine loop fills the rest of the context
  // max_tokens only bounds the output: the engine loop lowers it to what the context leaves after
  // the prompt instead of refusing the request (Anthropic's clients send their model's output
  // limit, 32k or more, whatever the server's context).
  bool max_tokens_is_cap = false;
  // Choices: n returned; best_of (completions, >= n) generated, the n with the highest summed
  // log-probability returned.
  int n = 1;
  int best_of = 1;
  // The caller asked for log-probabilities (chat logprobs: true / completions logprobs: k);
  // sampling.logprobs may be on without it (best_of ranks by them).
  bool want_logprobs = false;
  bool echo = false;             // completions: the prompt precedes each choice's text
  bool max_tokens_zero = false;  // completions with echo and max_tokens 0: the prompt only
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::string user;            // the `user` field (a session hint)
};

inline constexpr int kMaxStopStrings = 16;
inline constexpr int kMaxStopStringBytes = 1024;
inline constexpr int kMaxStopTokenIds = 1024;
// max_tokens above this is rejected here; the engine rejects anything above the context.
inline constexpr int64_t kMaxTokensLimit = int64_t(1) << 30;
inline constexpr int kMaxTopLogprobs = 20;        // chat top_logprobs (OpenAI's limit)
inline constexpr int kMaxCompletionLogprobs = 5;  // completions logprobs (OpenAI's limit)
inline constexpr int kMaxLogitBiasEntries = 1024;

struct ParseLimits {
  int max_n = 16;  // n and best_of at most (--max-n)
};

// Prompts in one completions request at most (a batch: `prompt` as a list).
inline constexpr int kMaxBatchPrompts = 256;

// POST /tokenize (vLLM's shape): {"prompt": text, "add_special_tokens": true} or
// {"messages": [...], "add_generation_prompt": true}; "model" optional; "parse_special" as in
// completions (off: the prompt is ordinary text, as /v1/completions reads it).
struct TokenizeRequest {
  std::string model;
  bool chat = false;
  std::string prompt;
  std::vector<ChatMessage> messages;
  ToolRequest tools;  // tools and tool turns, rendered as a chat request renders them
  bool add_special_tokens = true;
  ChatPromptOptions prompt_ending;  // add_generation_prompt, continue_final_message
  bool parse_special = false;
};
TokenizeRequest parse_tokenize(std::string_view body);
// POST /detokenize: {"tokens": [ids]} (ids >= 0; the vocabulary is checked by the caller).
struct DetokenizeRequest {
  std::string model;
  std::vector<int32_t> tokens;
};
DetokenizeRequest parse_detokenize(std::string_view body);

// Throws ApiError (400) naming the bad field.
ParsedRequest parse_request(ApiKind kind, std::string_view body, const ParseLimits& limits = {});

}  // namespace nc::server

#include "server/openai_format.h"

#include <random>

#include "server/api_error.h"

namespace nc::server {

using json = nlohmann::json;

std::string new_response_id(ApiKind kind) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kHex = "0123456789abcdef";
  std::string id = kind == ApiKind::Chat ? "chatcmpl-" : "cmpl-";
  for (int i = 0; i < 24; ++i) id += kHex[rng() & 15];
  return id;
}

json usage_json(int prompt_tokens, int completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

namespace {

json envelope(const ResponseMeta& m, bool chunk) {
  const char* object = m.kind == ApiKind::Chat
                           ? (chunk ? "chat.completion.chunk" : "chat.completion")
                           : "text_completion";
  return {{"id", m.id}, {"object", object}, {"created", m.created}, {"model", m.model}};
}

json reason_json(const std::string& r) {
  return r.empty() ? json(nullptr) : json(r);
}

}  // namespace

json completion_response(const ResponseMeta& m, const std::string& text,
                         const std::string& finish_reason, int prompt_tokens,
                         int completion_tokens) {
  json j = envelope(m, false);
  json choice = {
      {"index", 0}, {"logprobs", nullptr}, {"finish_reason", reason_json(finish_reason)}};
  if (m.kind == ApiKind::Chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  j["choices"] = json::array({std::move(choice)});
  j["usage"] = usage_json(prompt_tokens, completion_tokens);
  return j;
}

json stream_chunk(const ResponseMeta& m, const std::string& text, const std::string& finish_reason,
                  bool role_chunk, bool with_usage_null) {
  json j = envelope(m, true);
  json choice = {
      {"index", 0}, {"logprobs", nullptr}, {"finish_reason", reason_json(finish_reason)}};
  if (m.kind == ApiKind::Chat) {
    json delta = json::object();
    if (role_chunk) delta["role"] = "assistant";
    if (role_chunk || !text.empty()) delta["content"] = text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = text;
  }
  j["choices"] = json::array({std::move(choice)});
  if (with_usage_null) j["usage"] = nullptr;
  return j;
}

json usage_chunk(const ResponseMeta& m, int prompt_tokens, int completion_tokens) {
  json j = envelope(m, true);
  j["choices"] = json::array();
  j["usage"] = usage_json(prompt_tokens, completion_tokens);
  return j;
}

std::string sse_event(const json& j) {
  return "data: " + dump_json(j) + "\n\n";
}

}  // namespace nc::server

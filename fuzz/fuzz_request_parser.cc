// libFuzzer target for the HTTP server's request parser: any bytes as the body of
// POST /v1/chat/completions, POST /v1/completions, POST /v1/responses, POST /v1/messages and
// POST /v1/messages/count_tokens. Each parser must either
// return a request that passes the engine's own validation or throw ApiError (400) — never crash,
// hang or throw anything else. Error bodies must serialize whatever the input bytes were.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/anthropic_request.h"
#include "server/api_error.h"
#include "server/request_parser.h"
#include "server/responses_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (auto kind : {nc::server::ApiKind::Chat, nc::server::ApiKind::Completion}) {
    try {
      const nc::server::ParsedRequest r = nc::server::parse_request(kind, body);
      r.sampling.validate();  // what the parser accepts, the engine accepts
      if (kind == nc::server::ApiKind::Chat && r.messages.empty()) std::abort();
      if (kind == nc::server::ApiKind::Completion && r.prompt.empty() && r.prompt_ids.empty()) {
        std::abort();
      }
    } catch (const nc::server::ApiError& e) {
      if (e.status() != 400) std::abort();
      (void)nc::server::error_body(e);
    }
  }
  try {
    const nc::server::ResponsesRequest r = nc::server::parse_responses_request(body);
    r.chat.sampling.validate();
    if (r.chat.messages.empty() || r.chat.n != 1) std::abort();
  } catch (const nc::server::ApiError& e) {
    if (e.status() != 400) std::abort();
    (void)nc::server::error_body(e);
  }
  try {
    const nc::server::ParsedRequest r = nc::server::parse_anthropic_request(body);
    r.sampling.validate();
    if (r.messages.empty() || r.n != 1) std::abort();
  } catch (const nc::server::ApiError& e) {
    if (e.status() != 400) std::abort();
    (void)nc::server::dump_json(nc::server::anthropic_error_json(e));
  }
  try {
    (void)nc::server::parse_anthropic_count(body);
  } catch (const nc::server::ApiError& e) {
    if (e.status() != 400) std::abort();
    (void)nc::server::dump_json(nc::server::anthropic_error_json(e));
  }
  return 0;
}

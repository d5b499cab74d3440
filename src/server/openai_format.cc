#include "server/openai_format.h"

#include <algorithm>

#include <sys/random.h>

#include "server/api_error.h"

namespace nc::server {

using json = nlohmann::json;

// From the kernel's CSPRNG: a stored response's id is what lets a client read it back, so ids
// must not be predictable from others (a seeded generator's are).
std::string random_id(std::string prefix) {
  static const char* kHex = "0123456789abcdef";
  unsigned char bytes[12];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    const ssize_t n = ::getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n > 0) got += size_t(n);
  }
  for (unsigned char b : bytes) {
    prefix += kHex[b >> 4];
    prefix += kHex[b & 15];
  }
  return prefix;
}

std::string new_response_id(ApiKind kind) {
  return random_id(kind == ApiKind::Chat ? "chatcmpl-" : "cmpl-");
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

namespace {

double finite_logprob(float lp) {
  return lp > -9999.0f ? double(lp) : -9999.0;  // -inf (and NaN) have no JSON form
}

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

}  // namespace

json chat_logprobs_json(const std::vector<LogprobToken>& tokens) {
  json content = json::array();
  for (const LogprobToken& t : tokens) {
    json top = json::array();
    for (const auto& [text, lp] : t.top)
      top.push_back({{"token", text}, {"logprob", finite_logprob(lp)}, {"bytes", bytes_of(text)}});
    content.push_back({{"token", t.text},
                       {"logprob", finite_logprob(t.logprob.value_or(0.0f))},
                       {"bytes", bytes_of(t.text)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

size_t text_offset_length(std::string_view text) {
  size_t n = 0;
  for (const char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

size_t tokens_text_size(const std::vector<LogprobToken>& tokens) {
  size_t n = 0;
  for (const LogprobToken& t : tokens) n += text_offset_length(t.text);
  return n;
}

json completion_logprobs_json(const std::vector<LogprobToken>& tokens, size_t offset) {
  json toks = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  for (const LogprobToken& t : tokens) {
    toks.push_back(t.text);
    offs.push_back(offset);
    offset += text_offset_length(t.text);
    if (!t.logprob) {  // the first prompt token: nothing before it to predict it
      lps.push_back(nullptr);
      tops.push_back(nullptr);
      continue;
    }
    lps.push_back(finite_logprob(*t.logprob));
    // The top entries, and the token itself (OpenAI: up to logprobs + 1 entries).
    json top = json::object();
    for (const auto& [text, lp] : t.top)
      if (!top.contains(text)) top[text] = finite_logprob(lp);
    if (!top.contains(t.text)) top[t.text] = finite_logprob(*t.logprob);
    tops.push_back(std::move(top));
  }
  return {{"tokens", std::move(toks)},
          {"token_logprobs", std::move(lps)},
          {"top_logprobs", std::move(tops)},
          {"text_offset", std::move(offs)}};
}

json completion_response(const ResponseMeta& m, const std::vector<ChoiceResult>& choices,
                         int prompt_tokens, int completion_tokens) {
  json j = envelope(m, false);
  json arr = json::array();
  for (const ChoiceResult& c : choices) {
    json choice = {{"index", c.index},
                   {"logprobs", c.logprobs},
                   {"finish_reason", reason_json(c.finish_reason)},
                   {"stop_reason", c.stop_reason}};
    if (m.kind == ApiKind::Chat) {
      json msg = {{"role", "assistant"}, {"content", c.text}};
      if (c.text.empty() && !c.calls.empty()) msg["content"] = nullptr;
      if (!c.reasoning.empty()) msg["reasoning_content"] = c.reasoning;
      if (!c.calls.empty()) msg["tool_calls"] = tool_calls_json(c.calls, false);
      choice["message"] = std::move(msg);
    } else {
      choice["text"] = c.text;
    }
    arr.push_back(std::move(choice));
  }
  j["choices"] = std::move(arr);
  j["usage"] = usage_json(prompt_tokens, completion_tokens);
  return j;
}

json completion_response(const ResponseMeta& m, const std::string& text,
                         const std::string& finish_reason, int prompt_tokens,
                         int completion_tokens) {
  return completion_response(m, {ChoiceResult{0, text, finish_reason, nullptr, nullptr, {}, {}}},
                             prompt_tokens, completion_tokens);
}

json stream_chunk(const ResponseMeta& m, const std::string& text, const std::string& finish_reason,
                  bool role_chunk, bool with_usage_null, int index, const json& logprobs) {
  json j = envelope(m, true);
  json choice = {
      {"index", index}, {"logprobs", logprobs}, {"finish_reason", reason_json(finish_reason)}};
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

json tool_calls_json(const std::vector<ToolCall>& calls, bool stream) {
  json arr = json::array();
  for (size_t k = 0; k < calls.size(); ++k) {
    json call = {{"id", calls[k].id},
                 {"type", "function"},
                 {"function", {{"name", calls[k].name}, {"arguments", calls[k].arguments}}}};
    if (stream) call["index"] = k;
    arr.push_back(std::move(call));
  }
  return arr;
}

json tool_call_deltas_json(const std::vector<ToolCallDelta>& deltas) {
  json arr = json::array();
  for (const ToolCallDelta& d : deltas) {
    // One entry per call a chunk (as vLLM): a call's start and its first argument bytes merge.
    auto same =
        std::find_if(arr.begin(), arr.end(), [&](const json& c) { return c["index"] == d.index; });
    if (same == arr.end()) {
      arr.push_back({{"index", d.index}, {"function", {{"arguments", ""}}}});
      same = arr.end() - 1;
    }
    json& call = *same;
    call["function"]["arguments"] = call["function"]["arguments"].get<std::string>() + d.arguments;
    if (d.first) {
      call["id"] = d.id;
      call["type"] = "function";
      call["function"]["name"] = d.name;
    }
  }
  return arr;
}

json delta_chunk(const ResponseMeta& m, json delta, bool with_usage_null, int index,
                 const json& logprobs) {
  json j = envelope(m, true);
  json choice = {{"index", index},
                 {"delta", std::move(delta)},
                 {"logprobs", logprobs},
                 {"finish_reason", nullptr}};
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

std::string typed_sse_event(const json& e) {
  return "event: " + e.at("type").get<std::string>() + "\ndata: " + dump_json(e) + "\n\n";
}

std::string typed_sse_event(const nlohmann::ordered_json& e) {
  return "event: " + e.at("type").get<std::string>() + "\ndata: " + dump_json(e) + "\n\n";
}

}  // namespace nc::server

#include "server/request_parser.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "server/api_error.h"
#include "server/json_fields.h"

namespace nc::server {

namespace {

using json = nlohmann::json;

std::string message_content(const json& msg, const std::string& role, size_t i) {
  const std::string param = fmt::format("messages[{}].content", i);
  const json* c = present_field(msg, "content");
  if (!c) {
    // An assistant turn that only made tool calls has no content.
    if (role == "assistant") return "";
    throw invalid_param(param, fmt::format("'{}' is required for role '{}'", param, role));
  }
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) throw wrong_type(param, "a string or an array of content parts", *c);
  std::string text;
  for (size_t k = 0; k < c->size(); ++k) {
    const json& part = (*c)[k];
    const std::string pp = fmt::format("{}[{}]", param, k);
    if (!part.is_object()) throw wrong_type(pp, "an object", part);
    const std::string type = get_string(part, "type").value_or("");
    if (type != "text") {
      throw unsupported(pp + ".type", fmt::format("content part type '{}'", type));
    }
    const json* t = present_field(part, "text");
    if (!t || !t->is_string())
      throw invalid_param(pp + ".text", "a text part needs a string 'text'");
    if (!text.empty()) text += '\n';
    text += t->get<std::string>();
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json& body) {
  const json* m = present_field(body, "messages");
  if (!m) throw invalid_param("messages", "'messages' is required");
  if (!m->is_array()) throw wrong_type("messages", "an array", *m);
  if (m->empty()) throw invalid_param("messages", "'messages' must not be empty");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string param = fmt::format("messages[{}]", i);
    if (!msg.is_object()) throw wrong_type(param, "an object", msg);
    const json* r = present_field(msg, "role");
    if (!r) throw invalid_param(param + ".role", fmt::format("'{}.role' is required", param));
    if (!r->is_string()) throw wrong_type(param + ".role", "a string", *r);
    std::string role = r->get<std::string>();
    if (role == "developer") role = "system";  // OpenAI's newer name for the system turn
    if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
      throw invalid_param(param + ".role",
                          fmt::format("unknown role '{}' (expected system, developer, user, "
                                      "assistant or tool)",
                                      role));
    }
    out.push_back({role, message_content(msg, role, i)});
  }
  return out;
}

std::vector<int32_t> token_ids(const json& arr, const std::string& param) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& v = arr[i];
    const bool ok = v.is_number_integer() &&
                    !(v.is_number_unsigned() && v.get<uint64_t>() > INT32_MAX) &&
                    v.get<int64_t>() >= 0 && v.get<int64_t>() <= INT32_MAX;
    if (!ok) {
      throw invalid_param(
          param,
          fmt::format("'{}[{}]' must be a token id (an integer >= 0), got {}", param, i, v.dump()));
    }
    ids.push_back(int32_t(v.get<int64_t>()));
  }
  return ids;
}

// One prompt: a string or a list of token ids (`param` names it in errors).
ParsedRequest::BatchPrompt one_prompt(const json& p, const std::string& param) {
  ParsedRequest::BatchPrompt out;
  if (p.is_string()) {
    out.text = p.get<std::string>();
    if (out.text.empty()) throw invalid_param(param, fmt::format("'{}' must not be empty", param));
  } else if (p.is_array()) {
    out.ids = token_ids(p, param);
    out.is_ids = true;
    if (out.ids.empty()) throw invalid_param(param, fmt::format("'{}' must not be empty", param));
  } else {
    throw wrong_type(param, "a string or an array of token ids", p);
  }
  return out;
}

// prompt: a string, a list of token ids, or a batch (a list) of either.
void parse_prompt(const json& body, ParsedRequest& r) {
  const json* p = present_field(body, "prompt");
  if (!p) throw invalid_param("prompt", "'prompt' is required");
  std::vector<ParsedRequest::BatchPrompt> prompts;
  if (p->is_array() && !p->empty() && ((*p)[0].is_string() || (*p)[0].is_array())) {
    if (p->size() > size_t(kMaxBatchPrompts))
      throw invalid_param("prompt", fmt::format("at most {} prompts in a batch, got {}",
                                                kMaxBatchPrompts, p->size()));
    for (size_t i = 0; i < p->size(); ++i)
      prompts.push_back(
          one_prompt((*p)[i], p->size() == 1 ? "prompt" : fmt::format("prompt[{}]", i)));
  } else {
    prompts.push_back(one_prompt(*p, "prompt"));
  }
  r.prompt = std::move(prompts[0].text);
  r.prompt_ids = std::move(prompts[0].ids);
  r.prompt_is_ids = prompts[0].is_ids;
  r.more_prompts.assign(std::make_move_iterator(prompts.begin() + 1),
                        std::make_move_iterator(prompts.end()));
}

void parse_stop(const json& body, SamplingParams& sp) {
  const json* s = present_field(body, "stop");
  if (!s) return;
  std::vector<std::string> stops;
  if (s->is_string()) {
    stops.push_back(s->get<std::string>());
  } else if (s->is_array()) {
    if (s->size() > size_t(kMaxStopStrings)) {
      throw invalid_param("stop", fmt::format("at most {} stop strings", kMaxStopStrings));
    }
    for (const json& v : *s) {
      if (!v.is_string()) throw wrong_type("stop", "a string or an array of strings", v);
      stops.push_back(v.get<std::string>());
    }
  } else {
    throw wrong_type("stop", "a string or an array of strings", *s);
  }
  for (const std::string& x : stops) {
    if (x.empty()) throw invalid_param("stop", "stop strings must not be empty");
    if (x.size() > size_t(kMaxStopStringBytes)) {
      throw invalid_param("stop",
                          fmt::format("stop strings are limited to {} bytes", kMaxStopStringBytes));
    }
  }
  sp.stop = std::move(stops);
}

// Fields OpenAI defines that this server cannot honour: rejected, not silently ignored.
void reject_unsupported(const json& body, ApiKind kind) {
  if (kind == ApiKind::Completion && !get_string(body, "suffix").value_or("").empty())
    throw unsupported("suffix", "'suffix'");
  if (kind == ApiKind::Completion &&
      (present_field(body, "tools") || present_field(body, "tool_choice")))
    throw invalid_param("tools", "'tools' and 'tool_choice' are for /v1/chat/completions");
  if (const json* t = present_field(body, "functions")) {
    if (!t->is_array()) throw wrong_type("functions", "an array", *t);
    if (!t->empty()) throw unsupported("functions", "'functions' (use 'tools')");
  }
}

// n and best_of (completions): best_of >= n, both at most the server's --max-n; best_of > n
// cannot stream (the best are known only at the end), as OpenAI.
void parse_choices(const json& body, ApiKind kind, const ParseLimits& limits, ParsedRequest& r) {
  const int64_t max_n = std::max(1, limits.max_n);
  r.n = int(get_int(body, "n", 1, max_n).value_or(1));
  r.best_of = r.n;
  if (kind != ApiKind::Completion) return;
  if (auto b = get_int(body, "best_of", 1, max_n)) {
    if (*b < r.n) {
      throw invalid_param("best_of", fmt::format("'best_of' ({}) must be >= 'n' ({})", *b, r.n));
    }
    r.best_of = int(*b);
  }
  if (r.best_of > r.n && get_bool(body, "stream").value_or(false))
    throw invalid_param("best_of", "'best_of' greater than 'n' cannot be streamed");
}

// Chat: logprobs (bool) + top_logprobs (0..20). Completions: logprobs (0..5) and echo.
void parse_logprobs(const json& body, ApiKind kind, ParsedRequest& r) {
  SamplingParams& sp = r.sampling;
  if (kind == ApiKind::Chat) {
    const bool on = get_bool(body, "logprobs").value_or(false);
    const int64_t top = get_int(body, "top_logprobs", 0, kMaxTopLogprobs).value_or(0);
    if (top > 0 && !on) {
      throw invalid_param("top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
    }
    if (on) sp.logprobs = int(top);
  } else {
    if (auto k = get_int(body, "logprobs", 0, kMaxCompletionLogprobs)) sp.logprobs = int(*k);
    r.echo = get_bool(body, "echo").value_or(false);
    if (r.echo && sp.logprobs >= 0) sp.prompt_logprobs = sp.logprobs;
  }
  r.want_logprobs = sp.logprobs >= 0;
  // best_of ranks the choices by their summed log-probabilities.
  if (r.best_of > r.n) sp.logprobs = std::max(sp.logprobs, 0);
}

// logit_bias: {"<token id>": bias in [-100, 100]}.
void parse_logit_bias(const json& body, SamplingParams& sp) {
  const json* lb = present_field(body, "logit_bias");
  if (!lb) return;
  if (!lb->is_object()) throw wrong_type("logit_bias", "an object", *lb);
  if (lb->size() > size_t(kMaxLogitBiasEntries)) {
    throw invalid_param("logit_bias",
                        fmt::format("at most {} logit_bias entries", kMaxLogitBiasEntries));
  }
  for (const auto& [key, v] : lb->items()) {
    const bool digits = !key.empty() && key.size() <= 10 &&
                        key.find_first_not_of("0123456789") == std::string::npos;
    const int64_t id = digits ? std::stoll(key) : -1;
    if (id < 0 || id > INT32_MAX)
      throw invalid_param("logit_bias", fmt::format("keys must be token ids, got '{}'", key));
    const double b = v.is_number() ? v.get<double>() : NAN;
    if (!(b >= -100 && b <= 100)) {
      throw invalid_param("logit_bias",
                          fmt::format("token {}: a bias in [-100, 100], got {}", key, v.dump()));
    }
    sp.logit_bias.emplace_back(int32_t(id), float(b));
  }
}

void parse_sampling(const json& body, ApiKind kind, ParsedRequest& r) {
  SamplingParams& sp = r.sampling;
  if (auto x = get_number(body, "temperature", 0, 2)) sp.temperature = float(*x);
  if (auto x = get_number(body, "top_p", 0, 1, /*lo_open=*/true)) sp.top_p = float(*x);
  if (auto x = get_int(body, "top_k", -1, std::numeric_limits<int32_t>::max())) {
    sp.top_k = *x <= 0 ? -1 : int(*x);  // -1 and 0 both mean off (as vLLM)
  }
  if (auto x = get_number(body, "min_p", 0, 1)) sp.min_p = float(*x);
  if (auto x = get_number(body, "presence_penalty", -2, 2)) sp.presence_penalty = float(*x);
  if (auto x = get_number(body, "frequency_penalty", -2, 2)) sp.frequency_penalty = float(*x);
  if (auto x = get_number(body, "repetition_penalty", 0, 100, /*lo_open=*/true)) {
    sp.repetition_penalty = float(*x);
  }
  if (const json* s = present_field(body, "seed")) {
    if (!s->is_number_integer()) throw wrong_type("seed", "an integer", *s);
    sp.seed = s->is_number_unsigned() ? s->get<uint64_t>() : uint64_t(s->get<int64_t>());
  }
  // max_completion_tokens is the newer name in chat; it wins when both are given.
  // max_tokens 0 only with echo (completions): the prompt's log-probabilities, nothing
  // generated (what evaluation harnesses send); the engine then computes one token, not returned.
  std::optional<int64_t> max_tokens =
      get_int(body, "max_tokens", kind == ApiKind::Completion && r.echo ? 0 : 1, kMaxTokensLimit);
  if (max_tokens && *max_tokens == 0) {
    r.max_tokens_zero = true;
    max_tokens = 1;
  }
  if (kind == ApiKind::Chat) {
    if (auto x = get_int(body, "max_completion_tokens", 1, kMaxTokensLimit)) max_tokens = x;
  }
  if (max_tokens) {
    sp.max_tokens = int(*max_tokens);
    r.max_tokens_given = true;
  }
  if (auto x = get_int(body, "min_tokens", 0, kMaxTokensLimit)) sp.min_tokens = int(*x);
  if (auto x = get_bool(body, "ignore_eos")) sp.ignore_eos = *x;
  // Extension (as vLLM's extra fields): sparse decode attention's token budget for this request;
  // -1 the engine's, 0 dense (docs/long_context.md).
  if (auto x = get_int(body, "sparse_budget", -1, std::numeric_limits<int32_t>::max()))
    sp.sparse_budget = int(*x);
  if (auto x = get_bool(body, "skip_special_tokens")) sp.skip_special_tokens = *x;
  if (const json* ids = present_field(body, "stop_token_ids")) {
    if (!ids->is_array()) throw wrong_type("stop_token_ids", "an array of token ids", *ids);
    if (ids->size() > size_t(kMaxStopTokenIds)) {
      throw invalid_param("stop_token_ids",
                          fmt::format("at most {} stop token ids", kMaxStopTokenIds));
    }
    sp.stop_token_ids = token_ids(*ids, "stop_token_ids");
  }
  parse_stop(body, sp);
  parse_logit_bias(body, sp);
}

// parse_special (completions only): special-token texts in the prompt become control tokens.
// Chat contents are always text, so a chat request asking for it is refused.
void parse_special_flag(const json& body, ApiKind kind, ParsedRequest& r) {
  const bool on = get_bool(body, "parse_special").value_or(false);
  if (on && kind == ApiKind::Chat) {
    throw invalid_param("parse_special",
                        "'parse_special' applies to /v1/completions prompts only; chat message "
                        "contents are always tokenized as text");
  }
  r.parse_special = on;
}

}  // namespace

// vLLM's add_generation_prompt (default true) and continue_final_message (default false; it
// turns the generation prompt's default off).
ChatPromptOptions prompt_ending(const json& body) {
  const bool cont = get_bool(body, "continue_final_message").value_or(false);
  const std::optional<bool> agp = get_bool(body, "add_generation_prompt");
  if (cont && agp.value_or(false))
    throw invalid_param("continue_final_message",
                        "'continue_final_message' and 'add_generation_prompt' cannot both be true");
  ChatPromptOptions o;
  o.add_generation_prompt = agp.value_or(!cont);
  o.continue_final_message = cont;
  return o;
}

TokenizeRequest parse_tokenize(std::string_view body_text) {
  const json body = parse_json_object(body_text);
  TokenizeRequest r;
  r.model = get_string(body, "model").value_or("");
  if (present_field(body, "messages")) {
    r.chat = true;
    r.messages = parse_messages(body);
    if (needs_tool_request(body))
      r.tools =
          parse_tool_request(nlohmann::ordered_json::parse(body_text.begin(), body_text.end()));
    r.prompt_ending = prompt_ending(body);
    r.add_special_tokens = get_bool(body, "add_special_tokens").value_or(false);
    return r;
  }
  const std::optional<std::string> p = get_string(body, "prompt");
  if (!p) throw invalid_param("prompt", "'prompt' (or 'messages') is required");
  r.prompt = *p;
  r.add_special_tokens = get_bool(body, "add_special_tokens").value_or(true);
  r.parse_special = get_bool(body, "parse_special").value_or(false);
  return r;
}

DetokenizeRequest parse_detokenize(std::string_view body_text) {
  const json body = parse_json_object(body_text);
  DetokenizeRequest r;
  r.model = get_string(body, "model").value_or("");
  const json* t = present_field(body, "tokens");
  if (!t) throw invalid_param("tokens", "'tokens' is required");
  if (!t->is_array()) throw wrong_type("tokens", "an array of token ids", *t);
  r.tokens = token_ids(*t, "tokens");
  return r;
}

ParsedRequest parse_request(ApiKind kind, std::string_view body_text, const ParseLimits& limits) {
  const json body = parse_json_object(body_text);
  ParsedRequest r;
  r.kind = kind;
  // Optional: without it the served model answers (as vLLM and llama.cpp's server).
  r.model = get_string(body, "model").value_or("");

  if (kind == ApiKind::Chat) {
    r.messages = parse_messages(body);
    r.prompt_ending = prompt_ending(body);
    // Tools and tool turns reach the template: parsed again keeping the keys' order.
    if (needs_tool_request(body))
      r.tools =
          parse_tool_request(nlohmann::ordered_json::parse(body_text.begin(), body_text.end()));
  } else {
    parse_prompt(body, r);
  }
  reject_unsupported(body, kind);
  if (needs_structured(body)) {
    StructuredRequest st =
        parse_structured(nlohmann::ordered_json::parse(body_text.begin(), body_text.end()));
    r.sampling.structured = std::move(st.output);
    r.structured_param = std::move(st.param);
  }
  parse_choices(body, kind, limits, r);
  parse_logprobs(body, kind, r);
  parse_sampling(body, kind, r);
  parse_special_flag(body, kind, r);
  r.stream = get_bool(body, "stream").value_or(false);
  if (const json* so = present_field(body, "stream_options")) {
    if (!so->is_object()) throw wrong_type("stream_options", "an object", *so);
    if (!r.stream) {
      throw invalid_param("stream_options",
                          "'stream_options' is only allowed when 'stream' is true");
    }
    r.include_usage = get_bool(*so, "include_usage").value_or(false);
  }
  r.user = get_string(body, "user").value_or("");
  // What is left (min_tokens against max_tokens, ...) with the engine's own rules.
  if (!r.max_tokens_given)
    r.sampling.max_tokens = std::max(r.sampling.max_tokens, r.sampling.min_tokens);
  try {
    r.sampling.validate();
  } catch (const Error& e) {
    throw api_error_from(e);  // validate() throws InvalidArgument: a 400 naming no field
  }
  return r;
}

}  // namespace nc::server

#include "server/responses_request.h"

#include <algorithm>
#include <initializer_list>
#include <optional>
#include <set>
#include <utility>

#include <fmt/format.h>

#include "server/json_fields.h"
#include "server/structured_request.h"

namespace nc::server {

namespace {

using ojson = nlohmann::ordered_json;

// Fields that mean the same in both APIs (the chat parser checks them).
constexpr const char* kSameFields[] = {"model",
                                       "temperature",
                                       "top_p",
                                       "stream",
                                       "user",
                                       "parallel_tool_calls",
                                       "top_k",
                                       "min_p",
                                       "seed",
                                       "stop",
                                       "presence_penalty",
                                       "frequency_penalty",
                                       "logit_bias",
                                       "repetition_penalty",
                                       "min_tokens",
                                       "ignore_eos",
                                       "stop_token_ids",
                                       "skip_special_tokens"};

// The include values this server honours (encrypted reasoning is never produced: accepted, empty).
constexpr const char* kIncludes[] = {"message.output_text.logprobs", "reasoning.encrypted_content"};

// The conversation previous_response_id continues (none when absent).
ojson earlier_conversation(const ojson& b, const HistoryLookup& history) {
  const ojson* prev = present_field(b, "previous_response_id");
  if (!prev) return ojson::array();
  if (!history)
    throw unsupported("previous_response_id",
                      "'previous_response_id' (this server stores no responses: send the whole "
                      "conversation in 'input')");
  if (!prev->is_string()) throw field_error("previous_response_id", "must be a string");
  const std::string& id = prev->get_ref<const std::string&>();
  std::string missing = id;
  std::optional<ojson> h = history(id, missing);
  if (!h) {
    const std::string which =
        missing == id ? fmt::format("previous response '{}'", id)
                      : fmt::format("response '{}', which '{}' continues,", missing, id);
    throw ApiError(400,
                   fmt::format("{} not found (responses are kept in memory, the least recently "
                               "used dropped first)",
                               which),
                   "invalid_request_error", "previous_response_id", "previous_response_not_found");
  }
  return std::move(*h);
}

void reject_stateful(const ojson& b) {
  if (present_field(b, "conversation"))
    throw unsupported("conversation", "'conversation' (this server stores no conversations)");
  if (const ojson* bg = present_field(b, "background"); bg && *bg != false)
    throw unsupported("background", "'background' other than false");
  if (present_field(b, "prompt")) throw unsupported("prompt", "'prompt' (stored prompt templates)");
  // "auto" would drop the conversation's first items to fit the context: not done here.
  if (const ojson* t = present_field(b, "truncation")) {
    if (!t->is_string() || (*t != "disabled" && *t != "auto"))
      throw field_error("truncation", "must be 'disabled' or 'auto'");
    if (*t == "auto")
      throw unsupported("truncation",
                        "'truncation' 'auto' (a conversation over the context is "
                        "refused: 'disabled')");
  }
  // vLLM's chat extensions for structured output: this API's is text.format.
  for (const char* k : kGuidedFields)  // (response_format: reject_chat_names names it)
    if (present_field(b, k))
      throw unsupported(k, fmt::format("'{}' (the Responses API's structured output is "
                                       "'text.format')",
                                       k));
}

// The chat API's names for fields the Responses API names otherwise: a client that sends them
// means something this server would otherwise ignore (max_tokens: no length limit at all).
void reject_chat_names(const ojson& b) {
  for (auto [chat, responses] :
       {std::pair{"max_tokens", "max_output_tokens"},
        std::pair{"max_completion_tokens", "max_output_tokens"}, std::pair{"messages", "input"},
        std::pair{"response_format", "text.format"}}) {
    if (present_field(b, chat))
      throw field_error(
          chat, fmt::format("is the chat API's name: the Responses API's is '{}'", responses));
  }
}

// metadata: an object of at most 16 string values (OpenAI's limits: keys up to 64 characters,
// values up to 512).
void check_metadata(const ojson& b) {
  const ojson* m = present_field(b, "metadata");
  if (!m) return;
  if (!m->is_object() || m->size() > 16)
    throw field_error("metadata", "must be an object of at most 16 string values");
  for (const auto& [k, v] : m->items()) {
    if (k.size() > 64 || !v.is_string() || v.get_ref<const std::string&>().size() > 512)
      throw field_error("metadata." + k,
                        "must be a string of at most 512 characters under a key of at most 64");
  }
}

// Whether the client asked for the output's log-probabilities; other include values: 400.
bool read_include(const ojson& b) {
  const ojson* inc = present_field(b, "include");
  if (!inc) return false;
  if (!inc->is_array()) throw field_error("include", "must be an array of strings");
  bool logprobs = false;
  for (size_t i = 0; i < inc->size(); ++i) {
    const ojson& v = (*inc)[i];
    const std::string p = fmt::format("include[{}]", i);
    if (!v.is_string()) throw field_error(p, "must be a string");
    const std::string& s = v.get_ref<const std::string&>();
    if (std::find(std::begin(kIncludes), std::end(kIncludes), s) == std::end(kIncludes))
      throw unsupported(p, fmt::format("include value '{}'", s));
    logprobs = logprobs || s == kIncludes[0];
  }
  return logprobs;
}

// An item's content as chat content: a string, or its text parts.
ojson chat_content(const ojson& c, const std::string& at) {
  if (c.is_string()) return c;
  if (!c.is_array()) throw field_error(at, "must be a string or an array of content parts");
  ojson parts = ojson::array();
  for (size_t j = 0; j < c.size(); ++j) {
    const std::string p = fmt::format("{}[{}]", at, j);
    if (!c[j].is_object()) throw field_error(p, "must be an object");
    const std::string& type = required_string(c[j], "type", p);
    if (type == "input_text" || type == "output_text" || type == "text") {
      parts.push_back({{"type", "text"}, {"text", required_string(c[j], "text", p)}});
    } else if (type == "refusal") {
      parts.push_back({{"type", "text"}, {"text", required_string(c[j], "refusal", p)}});
    } else if (type == "input_image" || type == "input_file" || type == "input_audio") {
      // A placeholder, not a 400: clients resend the whole history, so a refused turn would fail
      // every later request of the conversation (as the Messages API does).
      parts.push_back({{"type", "text"},
                       {"text", fmt::format("[{} omitted: this model reads text only]", type)}});
    } else {
      throw field_error(p + ".type", fmt::format("'{}' is not a content part type", type));
    }
  }
  return parts;
}

void add_message(const ojson& item, const std::string& at, ojson& messages) {
  const std::string& role = required_string(item, "role", at);
  if (role != "user" && role != "assistant" && role != "system" && role != "developer")
    throw field_error(at + ".role",
                      fmt::format("'{}' is not one of user, assistant, system, developer", role));
  const ojson* c = present_field(item, "content");
  if (!c) throw field_error(at + ".content", "is required");
  messages.push_back({{"role", role}, {"content", chat_content(*c, at + ".content")}});
}

// A function_call item joins the assistant message before it (its text, or earlier calls).
void add_function_call(const ojson& item, const std::string& at, ojson& messages) {
  ojson call = {{"id", required_string(item, "call_id", at)},
                {"type", "function"},
                {"function",
                 {{"name", required_string(item, "name", at)},
                  {"arguments", required_string(item, "arguments", at)}}}};
  if (messages.empty() || messages.back()["role"] != "assistant")
    messages.push_back({{"role", "assistant"}, {"content", nullptr}});
  ojson& last = messages.back();
  if (!last.contains("tool_calls")) last["tool_calls"] = ojson::array();
  last["tool_calls"].push_back(std::move(call));
}

void add_function_output(const ojson& item, const std::string& at, ojson& messages) {
  const ojson* out = present_field(item, "output");
  if (!out) throw field_error(at + ".output", "is required");
  messages.push_back({{"role", "tool"},
                      {"tool_call_id", required_string(item, "call_id", at)},
                      {"content", chat_content(*out, at + ".output")}});
}

// Every function_call_output answers a call made before it (in the input or the stored
// conversation), as OpenAI requires: an unknown call_id is a 400 naming the input item, not a
// tool turn the template cannot place.
void check_outputs_answer_calls(const ojson& b, const ojson& conversation) {
  std::set<std::string> made;
  for (const ojson& m : conversation) {
    if (const auto calls = m.find("tool_calls"); calls != m.end())
      for (const ojson& c : *calls) made.insert(c.value("id", ""));
    if (m.value("role", "") != "tool") continue;
    const std::string id = m.value("tool_call_id", "");
    if (made.count(id)) continue;
    std::string at = "input";
    auto is = [](const ojson& item, const char* key, const std::string& want) {
      const ojson* v = present_field(item, key);  // item: an object (conversation_of checked)
      return v != nullptr && v->is_string() && v->get_ref<const std::string&>() == want;
    };
    if (const ojson* input = present_field(b, "input"); input && input->is_array())
      for (size_t i = 0; i < input->size(); ++i)
        if (is((*input)[i], "type", "function_call_output") && is((*input)[i], "call_id", id)) {
          at = fmt::format("input[{}]", i);
          break;
        }
    throw field_error(at + ".call_id",
                      fmt::format("'{}' answers no function_call before it (in the input or the "
                                  "previous response)",
                                  id));
  }
}

// The input items as chat messages after `earlier` (a stored conversation, or none): a
// function_call first in the input joins the assistant turn that ends it.
ojson conversation_of(const ojson& b, ojson messages) {
  const ojson* input = present_field(b, "input");
  if (!input) throw field_error("input", "is required");
  if (input->is_string()) {
    messages.push_back({{"role", "user"}, {"content", *input}});
    return messages;
  }
  if (!input->is_array() || input->empty())
    throw field_error("input", "must be a string or a non-empty array of items");
  for (size_t i = 0; i < input->size(); ++i) {
    const ojson& item = (*input)[i];
    const std::string at = fmt::format("input[{}]", i);
    if (!item.is_object()) throw field_error(at, "must be an object");
    const ojson* t = present_field(item, "type");
    if (t && !t->is_string()) throw field_error(at + ".type", "must be a string");
    const std::string type = t ? t->get<std::string>() : "message";
    if (type == "message") {
      add_message(item, at, messages);
    } else if (type == "function_call") {
      add_function_call(item, at, messages);
    } else if (type == "function_call_output") {
      add_function_output(item, at, messages);
    } else if (type == "item_reference") {
      throw unsupported(at + ".type", "'item_reference' (this server stores no items)");
    } else if (type != "reasoning") {
      throw field_error(at + ".type",
                        fmt::format("'{}' is not an input item type this server reads", type));
    }
  }
  return messages;
}

ojson chat_tools(const ojson& tools) {
  if (!tools.is_array()) throw field_error("tools", "must be an array");
  ojson out = ojson::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string at = fmt::format("tools[{}]", i);
    if (!tools[i].is_object()) throw field_error(at, "must be an object");
    const std::string& type = required_string(tools[i], "type", at);
    if (type != "function")
      throw unsupported(at + ".type", fmt::format("'{}' tools (only function tools)", type));
    ojson fn = {{"name", required_string(tools[i], "name", at)}};
    for (const char* k : {"description", "parameters", "strict"})
      if (const ojson* v = present_field(tools[i], k)) fn[k] = *v;
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

ojson chat_tool_choice(const ojson& c) {
  if (c.is_string()) return c;
  if (!c.is_object()) throw field_error("tool_choice", "must be a string or an object");
  const std::string& type = required_string(c, "type", "tool_choice");
  if (type != "function")
    throw unsupported("tool_choice.type", fmt::format("tool_choice type '{}'", type));
  return {{"type", "function"},
          {"function", {{"name", required_string(c, "name", "tool_choice")}}}};
}

// text.format as chat's response_format (null for plain text).
ojson chat_response_format(const ojson& text) {
  if (!text.is_object()) throw field_error("text", "must be an object");
  const ojson* f = present_field(text, "format");
  if (!f) return nullptr;
  if (!f->is_object()) throw field_error("text.format", "must be an object");
  const std::string& type = required_string(*f, "type", "text.format");
  if (type == "text") return nullptr;
  if (type == "json_object") return {{"type", "json_object"}};
  if (type != "json_schema")
    throw field_error("text.format.type",
                      fmt::format("'{}' is not one of text, json_object, json_schema", type));
  ojson schema = {{"name", required_string(*f, "name", "text.format")}};
  for (const char* k : {"schema", "strict", "description"})
    if (const ojson* v = present_field(*f, k)) schema[k] = *v;
  return {{"type", "json_schema"}, {"json_schema", std::move(schema)}};
}

// instructions (not carried from a previous response, as OpenAI's) and the conversation.
ojson chat_messages(const ojson& b, const ojson& conversation) {
  ojson messages = ojson::array();
  if (const ojson* ins = present_field(b, "instructions")) {
    if (!ins->is_string()) throw field_error("instructions", "must be a string");
    messages.push_back({{"role", "system"}, {"content", *ins}});
  }
  for (const ojson& m : conversation) messages.push_back(m);
  return messages;
}

ojson chat_body(const ojson& b, bool want_logprobs, const ojson& conversation) {
  ojson chat = ojson::object();
  chat["messages"] = chat_messages(b, conversation);
  for (const char* k : kSameFields)
    if (const ojson* v = present_field(b, k)) chat[k] = *v;
  if (const ojson* v = present_field(b, "max_output_tokens")) chat["max_completion_tokens"] = *v;
  if (const ojson* v = present_field(b, "tools")) chat["tools"] = chat_tools(*v);
  if (const ojson* v = present_field(b, "tool_choice")) chat["tool_choice"] = chat_tool_choice(*v);
  if (const ojson* v = present_field(b, "text")) {
    ojson rf = chat_response_format(*v);
    if (!rf.is_null()) chat["response_format"] = std::move(rf);
  }
  const ojson* top = present_field(b, "top_logprobs");
  if (want_logprobs || (top && *top != 0)) chat["logprobs"] = true;
  if (top) chat["top_logprobs"] = *top;
  return chat;
}

nlohmann::json echo_fields(const ojson& b) {
  auto get = [&](const char* k, ojson fallback) {
    const ojson* v = present_field(b, k);
    return v ? *v : fallback;
  };
  const ojson echo = {{"instructions", get("instructions", nullptr)},
                      {"tools", get("tools", ojson::array())},
                      {"tool_choice", get("tool_choice", "auto")},
                      {"parallel_tool_calls", get("parallel_tool_calls", true)},
                      {"temperature", get("temperature", 1.0)},
                      {"top_p", get("top_p", 1.0)},
                      {"max_output_tokens", get("max_output_tokens", nullptr)},
                      {"top_logprobs", get("top_logprobs", 0)},
                      {"text", get("text", {{"format", {{"type", "text"}}}})},
                      {"metadata", get("metadata", ojson::object())},
                      {"user", get("user", nullptr)}};
  return nlohmann::json::parse(echo.dump());  // the response is written unordered
}

}  // namespace

ojson with_output_turn(ojson conversation, const nlohmann::json& response) {
  std::string text;
  ojson calls = ojson::array();
  for (const nlohmann::json& item : response.at("output")) {
    if (item.at("type") == "message") {
      for (const nlohmann::json& part : item.at("content"))
        text += part.at("text").get<std::string>();
    } else if (item.at("type") == "function_call") {
      calls.push_back(
          {{"id", item.at("call_id")},
           {"type", "function"},
           {"function", {{"name", item.at("name")}, {"arguments", item.at("arguments")}}}});
    }
  }
  ojson turn = {{"role", "assistant"}, {"content", text}};
  if (!calls.empty()) {
    if (text.empty()) turn["content"] = nullptr;
    turn["tool_calls"] = std::move(calls);
  }
  conversation.push_back(std::move(turn));
  return conversation;
}

std::string responses_param(const std::string& p) {
  auto swap = [&](std::string_view from, std::string_view to) -> std::optional<std::string> {
    if (!p.starts_with(from)) return std::nullopt;
    return std::string(to) + p.substr(from.size());
  };
  for (auto [from, to] : std::initializer_list<std::pair<std::string_view, std::string_view>>{
           {"max_completion_tokens", "max_output_tokens"},
           {"max_tokens", "max_output_tokens"},
           {"response_format.json_schema", "text.format"},
           {"response_format", "text.format"},
           {"tool_choice.function", "tool_choice"},
           {"logprobs", "include"}}) {
    if (auto s = swap(from, to)) return *s;
  }
  if (p.starts_with("messages")) return "input";
  if (p.starts_with("tools[")) {  // tools[i].function.x -> tools[i].x
    const size_t f = p.find(".function");
    if (f != std::string::npos) return p.substr(0, f) + p.substr(f + 9);
  }
  return p;
}

ApiError as_responses_error(const ApiError& e) {
  return with_param(e, responses_param(e.param()));
}

ResponsesRequest parse_responses_request(std::string_view body, const ParseLimits& limits,
                                         const HistoryLookup& history) {
  const ojson b = parse_ordered_object(body);
  reject_stateful(b);
  reject_chat_names(b);
  check_metadata(b);
  const ojson* store = present_field(b, "store");
  if (store && !store->is_boolean()) throw field_error("store", "must be a boolean");
  if (const ojson* n = present_field(b, "n"); n && *n != 1)
    throw unsupported("n", "'n' other than 1 in the Responses API");
  const bool want_logprobs = read_include(b);
  ResponsesRequest r;
  try {
    const ojson conversation = conversation_of(b, earlier_conversation(b, history));
    check_outputs_answer_calls(b, conversation);
    r.input = conversation_of(b, ojson::array());
    r.store = !store || store->get<bool>();
    if (const ojson* prev = present_field(b, "previous_response_id"))
      r.previous_response_id = prev->get<std::string>();  // a string: earlier_conversation read it
    r.chat = parse_request(ApiKind::Chat, chat_body(b, want_logprobs, conversation).dump(), limits);
  } catch (const ApiError& e) {
    throw as_responses_error(e);
  }
  r.echo = echo_fields(b);
  r.echo["store"] = r.store;
  if (const ojson* prev = present_field(b, "previous_response_id"))
    r.echo["previous_response_id"] = *prev;
  return r;
}

}  // namespace nc::server

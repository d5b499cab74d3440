#include "tokenizer/chat_template.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/jinja_render.h"
#include "tokenizer/unicode.h"

namespace nc {

namespace {

bool contains(const std::string& s, const char* what) {
  return s.find(what) != std::string::npos;
}

// Python's str.isspace() on one code point (Jinja's trim filter and str.strip() use it).
bool py_isspace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Python's str.strip() / Jinja's |trim.
std::string py_strip(const std::string& s) {
  size_t begin = 0;
  while (begin < s.size()) {
    size_t next = begin;
    if (!py_isspace(unicode::utf8_next(s, next))) break;
    begin = next;
  }
  size_t end = begin;  // the end of the last non-space character
  for (size_t i = begin; i < s.size();) {
    if (!py_isspace(unicode::utf8_next(s, i))) end = i;
  }
  return s.substr(begin, end - begin);
}

// Undoes the escapes of a Jinja string literal (\n, \t, \', \", \\).
std::string unescape_literal(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    switch (c) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      default:
        out += c;  // \' \" \\ and anything else: the character itself
    }
  }
  return out;
}

// The fallback renders only these roles, and only string contents.
void check_fallback_messages(const std::vector<ChatMessage>& messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& r = messages[i].role;
    NC_CHECK_AS(ErrorKind::InvalidArgument, r == "system" || r == "user" || r == "assistant",
                "chat message {} has role '{}': the fallback renderer of this template supports "
                "only system, user and assistant",
                i, r);
  }
}

// Roles are template text (jinja_render.h), so only the known ones are let through.
void check_messages(const nlohmann::ordered_json& messages) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, messages.is_array(),
              "chat messages must be a JSON array, got {}", messages.type_name());
  for (size_t i = 0; i < messages.size(); ++i) {
    const nlohmann::ordered_json& m = messages[i];
    NC_CHECK_AS(ErrorKind::InvalidArgument, m.is_object() && m.contains("role"),
                "chat message {} must be an object with a role, got {}", i, m.dump());
    const nlohmann::ordered_json& role = m["role"];
    const std::string r = role.is_string() ? role.get<std::string>() : role.dump();
    NC_CHECK_AS(ErrorKind::InvalidArgument,
                r == "system" || r == "developer" || r == "user" || r == "assistant" || r == "tool",
                "chat message {} has role '{}': roles are system, developer, user, assistant "
                "and tool",
                i, r);
  }
}

// As transformers' _alias_reasoning_fields: a message's reasoning (reasoning_content, thinking
// or reasoning, the first not null) is also given as "thinking" (first) and "reasoning_content".
nlohmann::ordered_json alias_reasoning(const nlohmann::ordered_json& messages) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const nlohmann::ordered_json& m : messages) {
    const nlohmann::ordered_json* reasoning = nullptr;
    for (const char* key : {"reasoning_content", "thinking", "reasoning"}) {
      if (m.contains(key) && !m[key].is_null()) {
        reasoning = &m[key];
        break;
      }
    }
    if (reasoning == nullptr) {
      out.push_back(m);
      continue;
    }
    nlohmann::ordered_json a = {{"thinking", *reasoning}};
    for (const auto& [k, v] : m.items()) a[k] = v;
    a["reasoning_content"] = *reasoning;
    out.push_back(std::move(a));
  }
  return out;
}

bool is_text_parts(const nlohmann::ordered_json& content) {
  if (!content.is_array() || content.empty()) return false;
  for (const nlohmann::ordered_json& p : content) {
    if (!p.is_object() || p.value("type", "") != "text" || !p.contains("text") ||
        !p["text"].is_string())
      return false;
  }
  return true;
}

// For templates that take only string contents (the engine's probe), contents given as text
// parts are joined with "\n" (as vLLM and llama.cpp do); HF would fail on them instead.
void join_text_parts(const std::string& tmpl, nlohmann::ordered_json& messages) {
  bool any = false;
  for (const nlohmann::ordered_json& m : messages)
    any = any || is_text_parts(m.value("content", nlohmann::ordered_json()));
  if (!any || jinja_supports_typed_content(tmpl)) return;
  for (nlohmann::ordered_json& m : messages) {
    if (!m.contains("content") || !is_text_parts(m["content"])) continue;
    std::string joined;
    for (size_t i = 0; i < m["content"].size(); ++i)
      joined += (i > 0 ? "\n" : "") + m["content"][i]["text"].get<std::string>();
    m["content"] = joined;
  }
}

// {role, content} messages for the fallback: string contents only.
std::vector<ChatMessage> plain_messages(const nlohmann::ordered_json& messages) {
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const nlohmann::ordered_json& m = messages[i];
    const nlohmann::ordered_json content = m.value("content", nlohmann::ordered_json(""));
    NC_CHECK_AS(ErrorKind::Unsupported, content.is_string() && m.size() <= 2,
                "chat message {}: this template is rendered without Jinja (see the error before), "
                "which takes only a role and a string content",
                i);
    out.push_back({m["role"].get<std::string>(), content.get<std::string>()});
  }
  return out;
}

// Appends a rendered chat: markers (the template's own special-token texts) and text.
class ChatWriter {
 public:
  void marker(const std::string& s) {
    if (s.empty()) return;
    out_.markers.push_back({out_.text.size(), s.size()});
    out_.text += s;
  }
  void text(const std::string& s) { out_.text += s; }
  RenderedChat take() { return std::move(out_); }

 private:
  RenderedChat out_;
};

RenderedChat render_chatml(const std::string& tmpl, const std::vector<ChatMessage>& messages,
                           bool add_generation_prompt) {
  ChatWriter w;
  auto turn = [&](const std::string& role, const std::string& content) {
    w.marker("<|im_start|>");
    w.text(role + "\n" + content);
    w.marker("<|im_end|>");
    w.text("\n");
  };
  const std::string dflt = chatml_default_system(tmpl);
  if (!dflt.empty() && !messages.empty() && messages[0].role != "system") turn("system", dflt);
  for (const ChatMessage& m : messages) turn(m.role, m.content);
  if (add_generation_prompt) {
    w.marker("<|im_start|>");
    w.text("assistant\n");
  }
  return w.take();
}

RenderedChat render_llama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                           const std::string& bos) {
  ChatWriter w;
  auto header = [&](const std::string& role) {
    w.marker("<|start_header_id|>");
    w.text(role);
    w.marker("<|end_header_id|>");
    w.text("\n\n");
  };
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) w.marker(bos);
    header(messages[i].role);
    w.text(py_strip(messages[i].content));
    w.marker("<|eot_id|>");
  }
  if (add_generation_prompt) header("assistant");
  return w.take();
}

RenderedChat render_llama2(const std::vector<ChatMessage>& messages, const std::string& bos,
                           const std::string& eos) {
  size_t first = 0;
  std::string system;
  bool has_system = false;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    has_system = true;
    first = 1;
  }
  ChatWriter w;
  for (size_t i = first; i < messages.size(); ++i) {
    const size_t k = i - first;
    const ChatMessage& m = messages[i];
    NC_CHECK_AS(ErrorKind::InvalidArgument,
                (m.role == "user") == (k % 2 == 0) && m.role != "system",
                "Llama-2 chat template: roles must alternate user/assistant/user/... after an "
                "optional first system message (message {} is '{}')",
                i, m.role);
    std::string content = m.content;
    if (k == 0 && has_system) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
    if (m.role == "user") {
      w.marker(bos);
      w.text("[INST] " + py_strip(content) + " [/INST]");
    } else {
      w.text(" ");
      w.text(py_strip(content));
      w.text(" ");
      w.marker(eos);
    }
  }
  return w.take();
}

}  // namespace

ChatTemplateFamily detect_chat_template(const std::string& t) {
  if (contains(t, "<|im_start|>")) return ChatTemplateFamily::kChatML;
  if (contains(t, "<|start_header_id|>")) {
    NC_CHECK_AS(ErrorKind::Unsupported, !contains(t, "Cutting Knowledge Date"),
                "unsupported chat template: a Llama-3.1+ template (date and tool headers); only "
                "Llama-3-Instruct's template is supported for the <|start_header_id|> family");
    return ChatTemplateFamily::kLlama3;
  }
  if (contains(t, "[INST]") && contains(t, "<<SYS>>")) return ChatTemplateFamily::kLlama2;
  fail_as(
      ErrorKind::Unsupported,
      "unsupported chat template{}: supported families are ChatML (<|im_start|>, SmolLM2/Qwen2), "
      "Llama-3 (<|start_header_id|>) and Llama-2 ([INST] with <<SYS>>); pass one of those "
      "templates explicitly or use raw completion prompts",
      t.empty() ? " (the model has none)" : "");
}

const char* chat_template_family_name(ChatTemplateFamily f) {
  switch (f) {
    case ChatTemplateFamily::kChatML:
      return "chatml";
    case ChatTemplateFamily::kLlama3:
      return "llama3";
    case ChatTemplateFamily::kLlama2:
      return "llama2";
  }
  return "?";
}

std::string chatml_default_system(const std::string& t) {
  // A constant string literal '<|im_start|>system\n...<|im_end|>' (the newline written as is
  // or escaped) is the prompt the template inserts when the conversation has no system message.
  for (const char* head : {"<|im_start|>system\n", "<|im_start|>system\\n"}) {
    for (size_t pos = t.find(head); pos != std::string::npos; pos = t.find(head, pos + 1)) {
      const size_t start = pos + std::string(head).size();
      const size_t end = t.find("<|im_end|>", start);
      if (end == std::string::npos) continue;
      const std::string body = t.substr(start, end - start);
      // Anything that leaves the literal (a quote, an expression) means it is not a constant.
      if (body.empty() || body.find_first_of("'\"{}+") != std::string::npos) continue;
      return unescape_literal(body);
    }
  }
  return "";
}

namespace {

// The families rendered by hand, when the Jinja engine could not render the template.
RenderedChat render_family(const std::string& template_str,
                           const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                           const std::string& bos_token, const std::string& eos_token) {
  const ChatTemplateFamily family = detect_chat_template(template_str);
  check_fallback_messages(messages);
  switch (family) {
    case ChatTemplateFamily::kChatML:
      return render_chatml(template_str, messages, add_generation_prompt);
    case ChatTemplateFamily::kLlama3:
      return render_llama3(messages, add_generation_prompt, bos_token);
    case ChatTemplateFamily::kLlama2:
      return render_llama2(messages, bos_token, eos_token);
  }
  return {};
}

}  // namespace

RenderedChat render_chat_template_json(const std::string& template_str,
                                       const nlohmann::ordered_json& messages,
                                       const nlohmann::ordered_json& tools,
                                       bool add_generation_prompt, const std::string& bos_token,
                                       const std::string& eos_token, std::time_t now,
                                       const nlohmann::ordered_json& template_kwargs) {
  NC_CHECK_AS(ErrorKind::Unsupported, !template_str.empty(),
              "unsupported chat template (the model has none): use raw completion prompts or "
              "give a template (--chat-template)");
  check_messages(messages);
  NC_CHECK_AS(ErrorKind::InvalidArgument, tools.is_null() || tools.is_array(),
              "chat template: tools must be a JSON array, got {}", tools.type_name());
  JinjaChatInput in;
  in.messages = alias_reasoning(messages);
  join_text_parts(template_str, in.messages);
  in.tools = tools;
  in.add_generation_prompt = add_generation_prompt;
  in.bos_token = bos_token;
  in.eos_token = eos_token;
  in.now = now;
  in.extra = template_kwargs;
  std::string engine_error;
  try {
    JinjaRendered r = render_jinja(template_str, in);
    return {std::move(r.text), std::move(r.template_spans)};
  } catch (const JinjaEngineError& e) {
    engine_error = e.what();
  }
  // Fallback: the Jinja engine could not render this template (a syntax or filter it lacks);
  // the families recognised in the template string are rendered by hand, without tools.
  try {
    NC_CHECK_AS(ErrorKind::Unsupported, tools.is_null() || tools.empty(),
                "tools need the Jinja renderer");
    return render_family(template_str, plain_messages(messages), add_generation_prompt, bos_token,
                         eos_token);
  } catch (const Error& e) {
    fail_as(e.kind(),
            "unsupported chat template: the Jinja engine could not render it ({}); "
            "without it: {}",
            engine_error, e.what());
  }
}

RenderedChat render_chat_template(const std::string& template_str,
                                  const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt, const std::string& bos_token,
                                  const std::string& eos_token) {
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  for (const ChatMessage& m : messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
  return render_chat_template_json(template_str, msgs, nullptr, add_generation_prompt, bos_token,
                                   eos_token);
}

void continue_final_message(RenderedChat& chat, const std::string& final_text) {
  const size_t b = final_text.find_first_not_of(" \t\r\n");
  NC_CHECK_AS(ErrorKind::InvalidArgument, b != std::string::npos,
              "continue_final_message: the final assistant message has no text to continue");
  // The trimmed text first: templates that trim contents (Llama 3's) do not write the blanks
  // after it, and the whole text could then be found inside an earlier message instead.
  const size_t len = final_text.find_last_not_of(" \t\r\n") - b + 1;
  const size_t at = chat.text.rfind(final_text.substr(b, len));
  NC_CHECK_AS(ErrorKind::InvalidArgument, at != std::string::npos,
              "continue_final_message: the chat template does not write the final message's text "
              "as given, so it cannot be continued");
  size_t cut = at + len;
  // Its trailing blanks too where the template wrote them.
  const std::string trailing = final_text.substr(b + len);
  if (chat.text.compare(cut, trailing.size(), trailing) == 0) cut += trailing.size();
  chat.text.resize(cut);
  std::vector<TextSpan> kept;
  for (const TextSpan& s : chat.markers) {
    if (s.offset >= cut) break;
    kept.push_back({s.offset, std::min(s.length, cut - s.offset)});
  }
  chat.markers = std::move(kept);
}

std::string select_chat_template(const nlohmann::json& value, bool with_tools) {
  if (value.is_string()) return value.get<std::string>();
  if (!value.is_array()) return "";
  std::string first, dflt, tool_use;
  for (const nlohmann::json& e : value) {
    if (!e.is_object() || !e.contains("template") || !e["template"].is_string()) continue;
    const std::string name = e.value("name", "");
    if (first.empty()) first = e["template"].get<std::string>();
    if (name == "default") dflt = e["template"].get<std::string>();
    if (name == "tool_use") tool_use = e["template"].get<std::string>();
  }
  if (with_tools && !tool_use.empty()) return tool_use;
  return dflt.empty() ? first : dflt;
}

std::string apply_chat_template(const std::string& template_str,
                                const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token) {
  return render_chat_template(template_str, messages, add_generation_prompt, bos_token, eos_token)
      .text;
}

}  // namespace nc

#include "server/tool_calls.h"

#include "server/json_fields.h"
#include "server/tool_call_dsml.h"
#include "server/tool_call_id.h"
#include "server/tool_call_sections.h"
#include "server/tool_call_stream.h"
#include "server/tool_call_xml.h"

#include <nlohmann/json.hpp>

namespace nc::server {

namespace {

using json = nlohmann::json;

constexpr std::string_view kMistralThinkOpen = "[THINK]";
constexpr std::string_view kMistralThinkClose = "[/THINK]";
constexpr std::string_view kCallOpen = "<tool_call>";
constexpr std::string_view kCallClose = "</tool_call>";
constexpr std::string_view kMistralCalls = "[TOOL_CALLS]";
constexpr std::string_view kMistralArgs = "[ARGS]";
constexpr std::string_view kMistralCallId = "[CALL_ID]";
constexpr std::string_view kPythonTag = "<|python_tag|>";

std::string_view ltrim(std::string_view s) {
  const size_t p = s.find_first_not_of(" \t\r\n");
  return p == std::string_view::npos ? std::string_view() : s.substr(p);
}

std::string trim(std::string_view s) {
  return std::string(trim_blanks(s));
}

// The length of the longest proper prefix of tag that s ends with (text to hold back: it may
// become the tag when the next delta comes).
size_t partial_tag(std::string_view s, std::string_view tag) {
  for (size_t k = std::min(s.size(), tag.size() - 1); k > 0; --k) {
    if (s.substr(s.size() - k) == tag.substr(0, k)) return k;
  }
  return 0;
}

// Calls are read in the order the model wrote their keys (arguments are dumped again).
using ojson = nlohmann::ordered_json;

// {"name": ..., "arguments"|"parameters": {...} or a JSON string} as a call; false if not one.
// Without `need_arguments` a call may leave its arguments out (a tag said it is a call); Llama 3's
// bare JSON needs them (else any JSON answer with a "name" would be a call). The id is given
// later (parse_output), whatever id the model wrote.
bool call_from_json(std::string_view text, ToolCall& out, bool need_arguments = false) {
  // Model output is untrusted: nested past kMaxJsonDepth it is no call (parse_bounded).
  const ojson j = parse_bounded(text);
  if (!j.is_object()) return false;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->get_ref<const std::string&>().empty())
    return false;  // a call names its function
  auto args = j.find("arguments");
  if (args == j.end()) args = j.find("parameters");
  if (need_arguments && args == j.end()) return false;
  out.name = name->get<std::string>();
  if (args == j.end() || args->is_null()) {
    out.arguments = "{}";
  } else if (args->is_string()) {
    out.arguments = args->get<std::string>();
  } else {
    out.arguments = args->dump();
  }
  return true;
}

// A <tool_call> body that is not JSON: Qwen3-Coder's XML or GLM's tagged arguments.
using TaggedBody = bool (*)(std::string_view body, const ParamTypes* types, ToolCall& out);

// Hermes/Qwen: every <tool_call>...</tool_call> (the last may be cut off by the end) whose body
// is a call; what is not a call stays in the content. tagged: how bodies are read that are not
// JSON (Qwen3-Coder's, GLM's; a JSON body, as a forced call's grammar writes it, is read too).
void parse_hermes(std::string_view text, ParsedOutput& out, TaggedBody tagged = nullptr,
                  const ParamTypes* types = nullptr) {
  std::string content;
  size_t pos = 0;
  while (true) {
    const size_t open = text.find(kCallOpen, pos);
    if (open == std::string_view::npos) break;
    content += text.substr(pos, open - pos);
    const size_t body = open + kCallOpen.size();
    size_t close = text.find(kCallClose, body);
    // Cut by the end inside its closing tag ("...}}\n</"): the call is whole, the tag's start is
    // no content (the streamed answer has sent the call already).
    const size_t body_end =
        close == std::string_view::npos ? text.size() - partial_tag(text, kCallClose) : close;
    ToolCall call;
    const std::string b = trim(text.substr(body, body_end - body));
    if (tagged && !b.starts_with('{') ? tagged(b, types, call) : call_from_json(b, call)) {
      call.at = open;
      out.calls.push_back(std::move(call));
    } else {  // not a call: its text as written, closing tag and all
      pos = close == std::string_view::npos ? text.size() : close + kCallClose.size();
      content += text.substr(open, pos - open);
      continue;
    }
    pos = close == std::string_view::npos ? text.size() : close + kCallClose.size();
  }
  content += text.substr(pos);
  out.content = std::move(content);
}

// Llama 3: the whole output is one call's JSON, or several separated by ';'.
void parse_llama3(std::string_view text, ParsedOutput& out) {
  std::string_view t = ltrim(text);
  if (t.starts_with(kPythonTag)) t = t.substr(kPythonTag.size());
  std::vector<ToolCall> calls;
  size_t pos = 0;
  bool ok = ltrim(t).starts_with("{");
  while (ok && pos < t.size()) {
    size_t semi = t.find(';', pos);
    ToolCall call;
    // A ';' inside a string argument: try the longer piece when the short one is no call.
    while (semi != std::string_view::npos &&
           !call_from_json(t.substr(pos, semi - pos), call, /*need_arguments=*/true))
      semi = t.find(';', semi + 1);
    if (semi == std::string_view::npos) {
      ok = call_from_json(t.substr(pos), call, /*need_arguments=*/true);
      if (ok) calls.push_back(std::move(call));
      break;
    }
    calls.push_back(std::move(call));
    pos = semi + 1;
    if (trim(t.substr(pos)).empty()) break;
  }
  if (ok && !calls.empty()) {
    out.calls = std::move(calls);
  } else {
    out.content = std::string(text);
  }
}

// Mistral's list form: a JSON array of calls (or one call object); false when it is not one.
bool mistral_json_calls(std::string_view body, std::vector<ToolCall>& calls) {
  const std::string t = trim(body);
  const ojson j = parse_bounded(t);
  if (j.is_object()) return call_from_json(t, calls.emplace_back());
  if (!j.is_array() || j.empty()) return false;
  for (const ojson& c : j) {
    ToolCall call;
    if (!call_from_json(c.dump(), call)) return false;
    calls.push_back(std::move(call));
  }
  return true;
}

// Mistral's newer form: name[ARGS]{...} (with an optional [CALL_ID]id before [ARGS]).
bool mistral_named_call(std::string_view body, ToolCall& call) {
  const size_t args = body.find(kMistralArgs);
  if (args == std::string_view::npos) return false;
  std::string_view name = body.substr(0, args);
  if (const size_t id = name.find(kMistralCallId); id != std::string_view::npos)
    name = name.substr(0, id);
  const std::string n = trim(name);
  const std::string a = trim(body.substr(args + kMistralArgs.size()));
  if (n.empty()) return false;
  const ojson j = parse_bounded(a);
  if (!j.is_object()) return false;
  call.name = n;
  call.arguments = j.dump();
  return true;
}

// Mistral: content, then [TOOL_CALLS] followed by a JSON list of calls, or by name[ARGS]{...}
// once per call (each call after its own [TOOL_CALLS]). A forced call (tool_choice) is the list
// alone, without the control token. What does not parse stays in the content.
void parse_mistral(std::string_view text, bool forced, ParsedOutput& out) {
  size_t open = text.find(kMistralCalls);
  if (open == std::string_view::npos) {
    std::vector<ToolCall> calls;  // filled only when all of them parse
    if (forced && mistral_json_calls(text, calls)) {
      out.calls = std::move(calls);
      return;
    }
    out.content = std::string(text);
    return;
  }
  std::string_view rest = text.substr(open + kMistralCalls.size());
  std::vector<ToolCall> calls;
  bool ok = mistral_json_calls(rest, calls);
  while (!ok && !rest.empty()) {  // the named form, one [TOOL_CALLS] per call
    const size_t next = rest.find(kMistralCalls);
    ToolCall call;
    if (!mistral_named_call(rest.substr(0, next), call)) break;
    calls.push_back(std::move(call));
    if (next == std::string_view::npos) ok = true;
    rest = next == std::string_view::npos ? std::string_view()
                                          : rest.substr(next + kMistralCalls.size());
  }
  if (!ok) calls.clear();
  out.content = std::string(ok ? text.substr(0, open) : text);
  out.calls = std::move(calls);
}

}  // namespace

bool is_tagged_format(ToolFormat f) {
  return f == ToolFormat::QwenXml || f == ToolFormat::GlmXml;
}

bool keeps_special_tokens(ToolFormat f) {
  return f == ToolFormat::Mistral || is_section_format(f) || f == ToolFormat::Dsml ||
         f == ToolFormat::GlmXml;
}

bool keeps_special_tokens(const OutputFormat& f) {
  return keeps_special_tokens(f.tools) || f.think_open == kMistralThinkOpen;
}

bool calls_sent_whole(ToolFormat f) {
  return is_tagged_format(f) || f == ToolFormat::Dsml;
}

std::string_view trim_blanks(std::string_view s) {
  s = ltrim(s);
  const size_t p = s.find_last_not_of(" \t\r\n");
  return p == std::string_view::npos ? std::string_view() : s.substr(0, p + 1);
}

ToolFormat template_tool_format(const std::string& template_text) {
  const std::string_view t = template_text;
  if (const ToolFormat f = section_template_format(t); f != ToolFormat::None) return f;
  if (is_dsml_template(t)) return ToolFormat::Dsml;
  // Qwen3-Coder / Qwen3.5 and GLM: <tool_call> around tags (before Hermes, whose tag they share).
  if (t.find("<function=") != std::string_view::npos &&
      t.find("<parameter=") != std::string_view::npos)
    return ToolFormat::QwenXml;
  if (t.find("<arg_key>") != std::string_view::npos) return ToolFormat::GlmXml;
  if (t.find(kCallOpen) != std::string_view::npos) return ToolFormat::Hermes;
  // Before Llama 3: Mistral's tools' schemas say "parameters" too.
  if (t.find(kMistralCalls) != std::string_view::npos) return ToolFormat::Mistral;
  if (t.find("\"parameters\"") != std::string_view::npos ||
      t.find(kPythonTag) != std::string_view::npos)
    return ToolFormat::Llama3Json;
  return ToolFormat::Hermes;  // a template that shows no format: the most common one
}

OutputFormat detect_output_format(const std::string& template_text, const std::string& prompt_text,
                                  bool tools_on) {
  OutputFormat f;
  if (template_text.find(kMistralThinkOpen) != std::string::npos) {
    f.think_open = kMistralThinkOpen;
    f.think_close = kMistralThinkClose;
  }
  const std::string_view p = prompt_text;
  const size_t tail = p.find_last_not_of(" \t\r\n");
  f.starts_in_think =
      tail != std::string_view::npos && p.substr(0, tail + 1).ends_with(f.think_open);
  if (tools_on) f.tools = template_tool_format(template_text);
  return f;
}

namespace {

// The calls and content of what follows the reasoning block, in the format's way; ids given. The
// content is not trimmed here: the whole parse trims it, the stream sends it after what it sent
// (send_content holds blanks the same way), so both give the same text.
void parse_answer(std::string_view rest, const OutputFormat& f, ParsedOutput& out) {
  switch (f.tools) {
    case ToolFormat::Hermes:
      parse_hermes(rest, out);
      break;
    case ToolFormat::QwenXml:
    case ToolFormat::GlmXml:
      parse_hermes(rest, out, f.tools == ToolFormat::QwenXml ? xml_call : glm_call,
                   f.param_types ? &f.param_types->types : nullptr);
      break;
    case ToolFormat::Llama3Json:
      parse_llama3(rest, out);
      break;
    case ToolFormat::Mistral:
      parse_mistral(rest, f.forced_calls, out);
      break;
    case ToolFormat::DeepSeek:
    case ToolFormat::Kimi:  // a forced call is the grammar's Hermes tag
      f.forced_calls ? parse_hermes(rest, out) : parse_section_calls(rest, f.tools, out);
      break;
    case ToolFormat::Dsml:
      f.forced_calls ? parse_hermes(rest, out) : parse_dsml_calls(rest, out);
      break;
    case ToolFormat::None:
      out.content = std::string(rest);
      break;
  }
  std::vector<std::string> ids;
  for (ToolCall& call : out.calls)
    ids.push_back(call.id = new_tool_call_id(CallIds{f.tools, f.first_call_index}, call.name, ids));
}

// The format whose calls the stream reads: a forced DeepSeek, Kimi, DSML, Qwen3-Coder or GLM call
// is the grammar's Hermes tag, so it streams as one.
ToolFormat streamed_format(const OutputFormat& f) {
  const bool hermes_body = is_section_format(f.tools) || calls_sent_whole(f.tools);
  return f.forced_calls && hermes_body ? ToolFormat::Hermes : f.tools;
}

}  // namespace

ParsedOutput parse_output(const std::string& text, const OutputFormat& f) {
  ParsedOutput out;
  std::string_view rest = text;
  const bool think = f.starts_in_think || ltrim(rest).starts_with(f.think_open);
  if (!think && f.tools == ToolFormat::None) {
    out.content = text;  // nothing to read: the text as the model wrote it
    return out;
  }
  if (think) {
    if (!f.starts_in_think) rest = ltrim(rest).substr(f.think_open.size());
    const size_t close = rest.find(f.think_close);
    out.reasoning = std::string(rest.substr(0, close));
    rest = close == std::string_view::npos ? std::string_view()
                                           : rest.substr(close + f.think_close.size());
  }
  parse_answer(rest, f, out);
  out.content = trim(out.content);
  return out;
}

OutputStream::OutputStream(const OutputFormat& f)
    : f_(f),
      state_(f.starts_in_think ? State::Think : State::Start),
      trims_(f.tools != ToolFormat::None || f.starts_in_think),
      calls_(std::make_unique<CallArgStreamer>(streamed_format(f), f.forced_calls,
                                               CallIds{f.tools, f.first_call_index})) {}
OutputStream::~OutputStream() = default;
OutputStream::OutputStream(OutputStream&&) noexcept = default;

OutputStream::Delta OutputStream::add(const std::string& text_delta) {
  Delta d;
  if (state_ == State::Held) {
    held_ += text_delta;
  } else {
    pending_ += text_delta;
    route(d, false);
  }
  if (state_ == State::Held) stream_calls(d);
  return d;
}

void OutputStream::stream_calls(Delta& d) {
  std::vector<ToolCallDelta> calls = calls_->update(held_);
  if (!calls.empty()) saw_calls_ = true;
  d.calls.insert(d.calls.end(), calls.begin(), calls.end());
}

void OutputStream::send_content(Delta& d, std::string_view text) {
  if (!trims_) {
    d.content += text;
    return;
  }
  blanks_ += text;
  const size_t last = blanks_.find_last_not_of(" \t\r\n");
  if (last == std::string::npos) return;
  const std::string_view out = std::string_view(blanks_).substr(0, last + 1);
  d.content += sent_content_ ? out : ltrim(out);
  sent_content_ = true;
  blanks_.erase(0, last + 1);
}

void OutputStream::route(Delta& d, bool at_end) {
  if (state_ == State::Start) {
    const std::string_view t = ltrim(pending_);
    if (t.starts_with(f_.think_open)) {
      pending_ = std::string(t.substr(f_.think_open.size()));
      state_ = State::Think;
      trims_ = true;
    } else if (!at_end && (t.empty() || f_.think_open.starts_with(t))) {
      return;  // may still become <think>
    } else {
      state_ = State::Content;
    }
  }
  if (state_ == State::Think) {
    const size_t close = pending_.find(f_.think_close);
    if (close == std::string::npos) {
      const size_t keep = at_end ? 0 : partial_tag(pending_, f_.think_close);
      d.reasoning += pending_.substr(0, pending_.size() - keep);
      pending_.erase(0, pending_.size() - keep);
      return;
    }
    d.reasoning += pending_.substr(0, close);
    pending_ = std::string(ltrim(std::string_view(pending_).substr(close + f_.think_close.size())));
    state_ = State::Content;
  }
  if (f_.tools == ToolFormat::Llama3Json) {
    const std::string_view t = ltrim(pending_);
    if (t.starts_with("{") || t.starts_with(kPythonTag)) {
      held_ = std::move(pending_);
      pending_.clear();
      state_ = State::Held;
      return;
    }
    // Empty, or the start of a <|python_tag|> split across deltas: wait for more.
    if (!at_end && (t.empty() || std::string_view(kPythonTag).starts_with(t))) return;
    f_.tools = ToolFormat::None;  // content, not a call
  }
  if (f_.tools == ToolFormat::Hermes || calls_sent_whole(f_.tools) ||
      f_.tools == ToolFormat::Mistral || is_section_format(f_.tools)) {
    const std::string_view tag = f_.tools == ToolFormat::Mistral ? kMistralCalls
                                 : is_section_format(f_.tools)   ? section_begin_token(f_.tools)
                                 : f_.tools == ToolFormat::Dsml  ? kDsmlPrefix
                                                                 : kCallOpen;
    const size_t open = f_.forced_calls ? 0 : pending_.find(tag);
    if (open != std::string::npos) {
      send_content(d, std::string_view(pending_).substr(0, open));
      held_ = pending_.substr(open);
      pending_.clear();
      state_ = State::Held;
      return;
    }
    const size_t keep = at_end ? 0 : partial_tag(pending_, tag);
    send_content(d, std::string_view(pending_).substr(0, pending_.size() - keep));
    pending_.erase(0, pending_.size() - keep);
    return;
  }
  send_content(d, pending_);
  pending_.clear();
}

OutputStream::Delta OutputStream::finish() {
  Delta d;
  if (state_ != State::Held) route(d, true);
  if (state_ != State::Held) return d;
  stream_calls(d);
  std::string_view whole = held_;
  if (const std::optional<size_t> cut = calls_->cut_call_start()) {
    call_cut_ = true;
    const ToolFormat s = streamed_format(f_);
    whole = s == ToolFormat::Hermes || is_section_format(s) ? whole.substr(0, *cut)
                                                            : std::string_view();
  }
  // The reasoning block was routed already: a <think> in the held text is the answer's.
  ParsedOutput p;
  parse_answer(whole, f_, p);
  held_.clear();
  if (!p.content.empty()) send_content(d, p.content);
  std::vector<ToolCallDelta> rest = calls_->reconcile(p.calls);
  d.calls.insert(d.calls.end(), rest.begin(), rest.end());
  saw_calls_ = saw_calls_ || !p.calls.empty();
  return d;
}

}  // namespace nc::server

#include "server/tool_call_sections.h"

#include <cctype>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "server/json_fields.h"

namespace nc::server {

namespace {

struct SectionTokens {
  std::string_view calls_begin, calls_end, call_begin, sep, call_end;
};

constexpr SectionTokens kDeepSeek = {"<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>",
                                     "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>",
                                     "<｜tool▁call▁end｜>"};
constexpr SectionTokens kKimi = {"<|tool_calls_section_begin|>", "<|tool_calls_section_end|>",
                                 "<|tool_call_begin|>", "<|tool_call_argument_begin|>",
                                 "<|tool_call_end|>"};
constexpr std::string_view kFence = "```";

const SectionTokens& tokens_of(ToolFormat format) {
  NC_CHECK(format == ToolFormat::DeepSeek || format == ToolFormat::Kimi,
           "tool calls: format {} has no section of calls", int(format));
  return format == ToolFormat::Kimi ? kKimi : kDeepSeek;
}

// Kimi's "functions.NAME:K": NAME (an id of another shape is taken as the name).
std::string_view kimi_name(std::string_view id) {
  if (id.starts_with("functions.")) id.remove_prefix(10);
  const size_t colon = id.rfind(':');
  if (colon != std::string_view::npos && colon + 1 < id.size() &&
      id.find_first_not_of("0123456789", colon + 1) == std::string_view::npos)
    id = id.substr(0, colon);
  return id;
}

}  // namespace

namespace {

// One call's body (between its begin and end tokens); false when it is not a call. Its header is
// read as the stream reads it (section_call_header).
bool section_call(std::string_view body, ToolFormat format, ToolCall& call) {
  const std::optional<SectionCallHeader> h = section_call_header(body, format);
  if (!h) return false;
  std::string_view args = body.substr(h->args_at);
  if (h->fenced)  // V3's closing fence
    if (const size_t close = args.rfind(kFence); close != std::string_view::npos)
      args = args.substr(0, close);
  const nlohmann::ordered_json j = parse_bounded(trim_blanks(args));
  if (!j.is_object()) return false;
  call.name = h->name;
  call.arguments = j.dump();
  return true;
}

}  // namespace

ToolFormat section_template_format(std::string_view template_text) {
  for (ToolFormat f : {ToolFormat::DeepSeek, ToolFormat::Kimi})
    if (template_text.find(tokens_of(f).calls_begin) != std::string_view::npos) return f;
  return ToolFormat::None;
}

std::string_view section_begin_token(ToolFormat format) {
  return tokens_of(format).calls_begin;
}

std::string_view section_call_token(ToolFormat format) {
  return tokens_of(format).call_begin;
}

std::string_view section_call_end_token(ToolFormat format) {
  return tokens_of(format).call_end;
}

std::string_view section_end_token(ToolFormat format) {
  return tokens_of(format).calls_end;
}

std::optional<SectionCallHeader> section_call_header(std::string_view body, ToolFormat format) {
  const std::string_view sep_token = tokens_of(format).sep;
  const size_t sep = body.find(sep_token);
  if (sep == std::string_view::npos) return std::nullopt;
  std::string_view name = trim_blanks(body.substr(0, sep));
  size_t at = sep + sep_token.size();
  bool fenced = false;
  auto skip_blanks = [&] {
    while (at < body.size() && std::string_view(" \t\r\n").find(body[at]) != std::string_view::npos)
      ++at;
  };
  skip_blanks();
  if (format == ToolFormat::Kimi) {
    name = kimi_name(name);
  } else if (name == "function" && at < body.size() && body[at] != '{') {
    // V3's "NAME\n```json\n{": the name's line, then the fence's line.
    const size_t line_end = body.find('\n', at);
    if (line_end == std::string_view::npos) return std::nullopt;
    name = trim_blanks(body.substr(at, line_end - at));
    at = line_end + 1;
    skip_blanks();
    fenced = body.substr(at).starts_with(kFence);
    if (fenced) {
      const size_t fence_end = body.find('\n', at);
      if (fence_end == std::string_view::npos) return std::nullopt;
      at = fence_end + 1;
      skip_blanks();
    }
  }
  if (name.empty() || at >= body.size() || body[at] != '{') return std::nullopt;
  return SectionCallHeader{std::string(name), at, fenced};
}

void parse_section_calls(std::string_view text, ToolFormat format, ParsedOutput& out) {
  const SectionTokens& t = tokens_of(format);
  const size_t section = text.find(t.calls_begin);
  if (section == std::string_view::npos) {
    out.content = std::string(text);
    return;
  }
  std::string content(text.substr(0, section));
  const size_t section_end = text.find(t.calls_end, section);
  const size_t stop = section_end == std::string_view::npos ? text.size() : section_end;
  size_t pos = section + t.calls_begin.size();
  while (pos < stop) {
    const size_t open = text.find(t.call_begin, pos);
    if (open == std::string_view::npos || open >= stop) break;
    content += trim_blanks(text.substr(pos, open - pos));  // stray text between calls
    const size_t body = open + t.call_begin.size();
    const size_t close = std::min(text.find(t.call_end, body), stop);
    const size_t next = close == stop ? stop : close + t.call_end.size();
    ToolCall call;
    if (section_call(text.substr(body, close - body), format, call)) {
      call.at = open;
      out.calls.push_back(std::move(call));
    } else if (close != stop || section_end != std::string_view::npos) {
      content += text.substr(open, next - open);  // not a call: as written
    }  // else cut by the end inside the call (max_tokens): neither a call nor content
    pos = next;
  }
  content += trim_blanks(text.substr(pos, stop - pos));
  if (section_end != std::string_view::npos)
    content += text.substr(section_end + t.calls_end.size());
  out.content = std::move(content);
}

}  // namespace nc::server

#include "server/tool_call_deepseek.h"

#include <string>

#include <nlohmann/json.hpp>

#include "server/json_fields.h"

namespace nc::server {

namespace {

constexpr std::string_view kCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kSep = "<｜tool▁sep｜>";
constexpr std::string_view kFence = "```";

std::string_view trimmed(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// V3's "NAME\n```json\n{...}\n```": the name and the fenced arguments (unfenced: the rest).
void split_fenced(std::string_view after_sep, std::string_view& name, std::string_view& args) {
  const size_t line_end = after_sep.find('\n');
  name = trimmed(after_sep.substr(0, line_end));
  args = line_end == std::string_view::npos ? std::string_view() : after_sep.substr(line_end + 1);
  args = trimmed(args);
  if (args.starts_with(kFence)) {
    const size_t body = args.find('\n');
    args = body == std::string_view::npos ? std::string_view() : args.substr(body + 1);
    if (const size_t close = args.rfind(kFence); close != std::string_view::npos)
      args = args.substr(0, close);
  }
  args = trimmed(args);
}

// One call's body (between its begin and end tokens); false when it is not a call.
bool deepseek_call(std::string_view body, ToolCall& call) {
  const size_t sep = body.find(kSep);
  if (sep == std::string_view::npos) return false;
  std::string_view name = trimmed(body.substr(0, sep));
  std::string_view args = trimmed(body.substr(sep + kSep.size()));
  if (name == "function" && !args.starts_with('{')) split_fenced(args, name, args);
  if (name.empty()) return false;
  const nlohmann::ordered_json j = parse_bounded(args);
  if (!j.is_object()) return false;
  call.name = std::string(name);
  call.arguments = j.dump();
  return true;
}

}  // namespace

bool deepseek_template(std::string_view template_text) {
  return template_text.find(kDeepSeekCallsBegin) != std::string_view::npos;
}

void parse_deepseek(std::string_view text, ParsedOutput& out) {
  const size_t section = text.find(kDeepSeekCallsBegin);
  if (section == std::string_view::npos) {
    out.content = std::string(trimmed(text));
    return;
  }
  std::string content(text.substr(0, section));
  const size_t section_end = text.find(kCallsEnd, section);
  const size_t stop = section_end == std::string_view::npos ? text.size() : section_end;
  size_t pos = section + kDeepSeekCallsBegin.size();
  while (pos < stop) {
    const size_t open = text.find(kCallBegin, pos);
    if (open == std::string_view::npos || open >= stop) break;
    content += trimmed(text.substr(pos, open - pos));  // stray text between calls
    const size_t body = open + kCallBegin.size();
    const size_t close = std::min(text.find(kCallEnd, body), stop);
    const size_t next = close == stop ? stop : close + kCallEnd.size();
    ToolCall call;
    if (deepseek_call(text.substr(body, close - body), call)) {
      call.at = open;
      out.calls.push_back(std::move(call));
    } else if (close != stop || section_end != std::string_view::npos) {
      content += text.substr(open, next - open);  // not a call: as written
    }  // else cut by the end inside the call (max_tokens): neither a call nor content
    pos = next;
  }
  content += trimmed(text.substr(pos, stop - pos));
  if (section_end != std::string_view::npos) content += text.substr(section_end + kCallsEnd.size());
  out.content = std::string(trimmed(content));
}

}  // namespace nc::server

// CallArgStreamer (server/tool_call_stream.h).
#include "server/tool_call_stream.h"

#include <algorithm>
#include <regex>

#include "server/tool_call_id.h"
#include "server/tool_call_sections.h"

#include <nlohmann/json.hpp>

namespace nc::server {
namespace {

// A call object's start up to its arguments' opening brace; group 1: the name's JSON text.
constexpr const char* kJsonCall =
    R"re(\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)+)"\s*,\s*"(?:arguments|parameters)"\s*:\s*\{)re";

const std::regex& hermes_header() {
  static const std::regex re(std::string(R"(\s*)") + kJsonCall);
  return re;
}
// After a Mistral list entry's arguments, before its closing brace: the "id" that Nemo's
// template writes there in earlier turns (so a model may write one too; it is not used).
constexpr const char* kIdTail = R"re((?:\s*,\s*"id"\s*:\s*"(?:[^"\\]|\\.)*")?)re";

// Mistral's list: "[" before the first call, "}," between calls.
const std::regex& mistral_list_header() {
  static const std::regex re(std::string(R"(\s*(?:\[|)") + kIdTail + R"(\s*\}\s*,)\s*)" +
                             kJsonCall);
  return re;
}
const std::regex& mistral_list_end() {
  static const std::regex re(kIdTail + std::string(R"(\s*\}\s*\])"));
  return re;
}
// Llama 3: the output starts with a call (after an optional <|python_tag|>); "};" between calls.
const std::regex& llama_first_header() {
  static const std::regex re(std::string(R"(\s*(?:<\|python_tag\|>)?\s*)") + kJsonCall);
  return re;
}
const std::regex& llama_next_header() {
  static const std::regex re(std::string(R"(\s*\}\s*;\s*)") + kJsonCall);
  return re;
}
// Mistral's named form: name[ARGS]{ (an optional [CALL_ID]id before [ARGS]); group 1: the name.
const std::regex& mistral_named_header() {
  static const std::regex re(R"re(\s*([^\[\]\s"{}]+)(?:\[CALL_ID\][^\[]*)?\[ARGS\]\s*\{)re");
  return re;
}

// A call's header is short. std::regex recurses once per repeated character (a model that wrote
// 30k blanks after <tool_call> overflowed the stack and ended the server) and a failed match is
// retried on every delta, so a header is looked for in this many bytes only; one that does not
// fit is left to the whole-text parse at the end.
constexpr size_t kMaxHeaderBytes = 1024;

bool match_at(std::string_view s, size_t pos, const std::regex& re, std::cmatch& m) {
  const char* end = s.data() + std::min(s.size(), pos + kMaxHeaderBytes);
  return std::regex_search(s.data() + pos, end, m, re, std::regex_constants::match_continuous);
}

std::string unescape_name(const std::string& json_text) {
  const auto j = nlohmann::json::parse("\"" + json_text + "\"", nullptr, false);
  return j.is_string() ? j.get<std::string>() : json_text;
}

}  // namespace

CallArgStreamer::CallArgStreamer(ToolFormat format, bool forced, CallIds ids)
    : format_(format),
      id_shape_(ids),
      state_(forced && format == ToolFormat::Mistral ? State::Header : State::Open) {
  // Llama 3's output is held from its first character only when it may be a call.
  if (format == ToolFormat::Llama3Json) state_ = State::Header;
  // Nothing to stream: no calls, or XML, GLM and DSML calls (sent whole once the output is parsed).
  if (format == ToolFormat::None || calls_sent_whole(format)) state_ = State::Done;
}

std::vector<ToolCallDelta> CallArgStreamer::update(std::string_view held) {
  std::vector<ToolCallDelta> out;
  for (;;) {
    const State before = state_;
    const size_t pos = pos_;
    if (state_ == State::Open && !find_open(held)) break;
    if (state_ == State::Header && !match_header(held, out)) break;
    if (state_ == State::Args) scan_args(held, out);
    if (state_ == State::Done || (state_ == before && pos_ == pos)) break;
  }
  return out;
}

bool CallArgStreamer::find_open(std::string_view held) {
  const std::string_view tag = format_ == ToolFormat::Hermes ? "<tool_call>"
                               : is_section_format(format_)  ? section_call_token(format_)
                                                             : "[TOOL_CALLS]";
  const size_t at = held.find(tag, pos_);
  if (at == std::string_view::npos) return false;
  // Past the end of DeepSeek's or Kimi's section no call is read (the whole parse's rule).
  if (is_section_format(format_) &&
      held.substr(0, at).find(section_end_token(format_), pos_) != std::string_view::npos) {
    state_ = State::Done;
    return false;
  }
  call_start_ = at;
  pos_ = at + tag.size();
  state_ = State::Header;
  return true;
}

bool CallArgStreamer::match_header(std::string_view held, std::vector<ToolCallDelta>& out) {
  if (read_header(held, out)) return true;
  if (held.size() - pos_ >= kMaxHeaderBytes) state_ = State::Done;  // the whole parse decides
  return false;
}

bool CallArgStreamer::read_header(std::string_view held, std::vector<ToolCallDelta>& out) {
  std::cmatch m;
  std::string name;
  size_t header_bytes = 0;  // up to and with the arguments' '{'
  if (format_ == ToolFormat::Hermes) {
    if (!match_at(held, pos_, hermes_header(), m)) return false;
    name = unescape_name(m[1].str());
  } else if (is_section_format(format_)) {
    const std::optional<SectionCallHeader> h = section_call_header(
        held.substr(pos_, std::min(held.size() - pos_, kMaxHeaderBytes)), format_);
    if (!h) return false;
    name = h->name;
    header_bytes = h->args_at + 1;
  } else if (format_ == ToolFormat::Llama3Json) {
    if (!match_at(held, pos_, ids_.empty() ? llama_first_header() : llama_next_header(), m))
      return false;
    name = unescape_name(m[1].str());
  } else if (in_list_ && match_at(held, pos_, mistral_list_end(), m)) {
    pos_ += size_t(m.length(0));
    in_list_ = false;
    state_ = State::Open;
    return true;
  } else if (match_at(held, pos_, mistral_list_header(), m)) {
    name = unescape_name(m[1].str());
    in_list_ = true;
  } else if (!in_list_ && match_at(held, pos_, mistral_named_header(), m)) {
    name = m[1].str();
  } else {
    return false;
  }
  // Hermes and the sections: where its tag starts (find_open).
  if (format_ != ToolFormat::Hermes && !is_section_format(format_)) call_start_ = pos_;
  // From the arguments' opening brace on.
  pos_ += (header_bytes != 0 ? header_bytes : size_t(m.length(0))) - 1;
  in_string_ = escape_ = in_number_ = false;
  literal_ = {};
  stack_.clear();
  expect_ = Expect::Value;
  ToolCallDelta d;
  d.index = int(ids_.size());
  d.first = true;
  d.id = new_tool_call_id(id_shape_, name, ids_);
  d.name = std::move(name);
  ids_.push_back(d.id);
  starts_.push_back(call_start_);
  out.push_back(std::move(d));
  state_ = State::Args;
  return true;
}

// One byte of the arguments outside their strings; false when no JSON can go on with it (a tag
// the model began inside unclosed arguments, a word after a value, a key in a list). What a
// client has accumulated then stays a JSON prefix, which partial-JSON readers (Anthropic's SDKs)
// need: they raise on anything else. Numbers are read loosely (their characters, not their form).
bool CallArgStreamer::json_continues(char c, bool& closed) {
  if (!literal_.empty()) {  // inside true / false / null
    if (c != literal_.front()) return false;
    literal_.remove_prefix(1);
    if (literal_.empty()) expect_ = Expect::CommaOrClose;
    return true;
  }
  if (in_number_) {
    if (std::string_view("0123456789+-.eE").find(c) != std::string_view::npos) return true;
    in_number_ = false;
    expect_ = Expect::CommaOrClose;
  }
  if (c == ' ' || c == '\t' || c == '\r' || c == '\n') return true;
  const bool in_object = !stack_.empty() && stack_.back() == '{';
  switch (expect_) {
    case Expect::Colon:
      if (c != ':') return false;
      expect_ = Expect::Value;
      return true;
    case Expect::CommaOrClose:
      if (c == ',') {
        expect_ = in_object ? Expect::Key : Expect::Value;
        return true;
      }
      return close(c, closed);
    case Expect::KeyOrClose:
      if (c == '}') return close(c, closed);
      [[fallthrough]];
    case Expect::Key:
      if (c != '"') return false;
      in_string_ = true;
      return true;
    case Expect::ValueOrClose:
      if (c == ']') return close(c, closed);
      [[fallthrough]];
    case Expect::Value:
      break;
  }
  if (c == '"') {
    in_string_ = true;
  } else if (c == '{' || c == '[') {
    stack_.push_back(c);
    expect_ = c == '{' ? Expect::KeyOrClose : Expect::ValueOrClose;
  } else if (c == 't' || c == 'f' || c == 'n') {
    literal_ = c == 't' ? "rue" : c == 'f' ? "alse" : "ull";
  } else if (c == '-' || (c >= '0' && c <= '9')) {
    in_number_ = true;
  } else {
    return false;
  }
  return true;
}

// A '}' or ']' closing the innermost container (false when it is the other kind).
bool CallArgStreamer::close(char c, bool& closed) {
  if (stack_.empty() || (c == '}') != (stack_.back() == '{') || (c != '}' && c != ']'))
    return false;
  stack_.pop_back();
  expect_ = Expect::CommaOrClose;
  closed = stack_.empty();
  return true;
}

// After a string: a key wants its colon, a value a separator or a close.
void CallArgStreamer::string_ended() {
  expect_ = expect_ == Expect::Key || expect_ == Expect::KeyOrClose ? Expect::Colon
                                                                    : Expect::CommaOrClose;
}

std::optional<bool> CallArgStreamer::end_tag_at(std::string_view rest) const {
  std::string_view tags[2];  // no allocation: this runs at each '<' inside arguments' strings
  if (format_ == ToolFormat::Hermes) tags[0] = "</tool_call>";
  if (is_section_format(format_))
    tags[0] = section_call_end_token(format_), tags[1] = section_end_token(format_);
  for (const std::string_view t : tags) {
    if (t.empty()) continue;
    if (rest.starts_with(t)) return true;
    if (t.starts_with(rest)) return false;
  }
  return std::nullopt;
}

void CallArgStreamer::scan_args(std::string_view held, std::vector<ToolCallDelta>& out) {
  const size_t from = pos_;
  size_t i = pos_;
  bool closed = false, broken = false;
  for (; i < held.size() && !closed; ++i) {
    const char c = held[i];
    if (escape_) {
      escape_ = false;
    } else if (in_string_) {
      if (static_cast<unsigned char>(c) < 0x20) {  // a raw control byte: no JSON string
        broken = true;
        break;
      }
      // The call's end tag inside a string: the whole parse ends the call there (no JSON).
      if (c == '<') {
        const std::optional<bool> tag = end_tag_at(held.substr(i));
        if (tag) {
          broken = *tag;  // else its start: wait for the rest
          break;
        }
      }
      if (c == '\\') escape_ = true;
      if (c == '"') {
        in_string_ = false;
        string_ended();
      }
    } else if (!json_continues(c, closed)) {
      broken = true;  // stop before it: the whole parse decides what this was
      break;
    }
  }
  pos_ = i;
  if (i > from) {
    ToolCallDelta d;
    d.index = int(ids_.size()) - 1;
    d.arguments = std::string(held.substr(from, i - from));
    out.push_back(std::move(d));
  }
  // The next call: the list goes on (Mistral), or after the next opening tag.
  if (closed) state_ = in_list_ || format_ == ToolFormat::Llama3Json ? State::Header : State::Open;
  if (broken) state_ = State::Done;
}

std::optional<size_t> CallArgStreamer::cut_call_start() const {
  if (state_ != State::Args) return std::nullopt;
  return call_start_;
}

// The announced call a parsed one is: Hermes and the sections by where its tag starts (a streamed
// call the whole parse refused must not take a later call's place), the other formats by order.
std::optional<size_t> CallArgStreamer::announced_as(const ToolCall& call, size_t k) const {
  if (format_ != ToolFormat::Hermes && !is_section_format(format_))
    return k < ids_.size() ? std::optional(k) : std::nullopt;
  for (size_t j = 0; j < starts_.size(); ++j)
    if (starts_[j] == call.at) return j;
  return std::nullopt;
}

std::vector<ToolCallDelta> CallArgStreamer::reconcile(std::vector<ToolCall>& calls) const {
  std::vector<ToolCallDelta> out;
  std::vector<std::string> taken = ids_;
  int next_index = int(ids_.size());
  for (size_t k = 0; k < calls.size(); ++k) {
    if (const std::optional<size_t> j = announced_as(calls[k], k)) {
      calls[k].id = ids_[*j];
      continue;
    }
    // The whole parse drew its ids apart from each other, not from the streamed ones.
    calls[k].id = new_tool_call_id(id_shape_, calls[k].name, taken);
    taken.push_back(calls[k].id);
    ToolCallDelta d;
    d.index = next_index++;
    d.first = true;
    d.id = calls[k].id;
    d.name = calls[k].name;
    d.arguments = calls[k].arguments;
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace nc::server

// DeepSeek-V3.2's and V4's DSML tool calls (server/tool_call_dsml.h).
#include "server/tool_call_dsml.h"

#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/json_fields.h"

namespace nc::server {
namespace {

using ojson = nlohmann::ordered_json;

constexpr std::string_view kBlockNames[] = {"function_calls", "tool_calls"};  // V3.2, V4
constexpr std::string_view kInvoke = "<｜DSML｜invoke";
constexpr std::string_view kInvokeClose = "</｜DSML｜invoke>";
constexpr std::string_view kParam = "<｜DSML｜parameter";
constexpr std::string_view kParamClose = "</｜DSML｜parameter>";
constexpr size_t npos = std::string_view::npos;

// A block of calls in `text`: its open tag at `open`, its body [body, close), its end after the
// close tag (close = end = the text's end when the end cut it short).
struct Block {
  size_t open = 0, body = 0, close = 0, end = 0;
};

// Where each block name's open tag is next, searched again only once passed: one scan of the
// text per name, not one per block (a text of many blocks of one name is not quadratic).
class BlockFinder {
 public:
  explicit BlockFinder(std::string_view text) : text_(text) {}
  std::optional<Block> next(size_t from);

 private:
  std::string_view text_;
  size_t next_at_[std::size(kBlockNames)] = {0, 0};
  bool searched_[std::size(kBlockNames)] = {false, false};
};

std::optional<Block> BlockFinder::next(size_t from) {
  Block b;
  b.open = npos;
  std::string close_tag;
  for (size_t n = 0; n < std::size(kBlockNames); ++n) {
    const std::string open_tag = std::string(kDsmlPrefix).append(kBlockNames[n]).append(">");
    if (!searched_[n] || (next_at_[n] != npos && next_at_[n] < from)) {
      next_at_[n] = text_.find(open_tag, from);
      searched_[n] = true;
    }
    const size_t at = next_at_[n];
    if (at == npos || at >= b.open) continue;
    b.open = at;
    b.body = at + open_tag.size();
    close_tag = "</｜DSML｜" + std::string(kBlockNames[n]) + ">";
  }
  if (b.open == npos) return std::nullopt;
  const size_t c = text_.find(close_tag, b.body);
  b.close = c == npos ? text_.size() : c;
  b.end = c == npos ? text_.size() : c + close_tag.size();
  return b;
}

// The value of attribute `key` in a tag's text (` name="x"`), or nullopt.
std::optional<std::string_view> attribute(std::string_view tag, std::string_view key) {
  const std::string start = " " + std::string(key) + "=\"";
  const size_t at = tag.find(start);
  if (at == npos) return std::nullopt;
  const size_t from = at + start.size();
  const size_t end = tag.find('"', from);
  if (end == npos) return std::nullopt;
  return tag.substr(from, end - from);
}

// An element `<｜DSML｜NAME attributes>inner</｜DSML｜NAME>` found at or after `from`: where it
// starts, its tag (with the attributes), its inner text (to the end of `text` when the close tag
// is missing) and where the next search starts. nullopt when there is none, or when the end cut
// its tag.
struct Element {
  size_t at = 0;
  std::string_view tag, inner;
  size_t next = 0;
};

std::optional<Element> next_element(std::string_view text, size_t from, std::string_view open,
                                    std::string_view close) {
  const size_t at = text.find(open, from);
  if (at == npos) return std::nullopt;
  const size_t tag_end = text.find('>', at);
  if (tag_end == npos) return std::nullopt;
  const size_t c = text.find(close, tag_end);
  Element e;
  e.at = at;
  e.tag = text.substr(at, tag_end - at);
  e.inner = text.substr(tag_end + 1, (c == npos ? text.size() : c) - tag_end - 1);
  e.next = c == npos ? text.size() : c + close.size();
  return e;
}

// An invocation's parameters as a JSON object's text.
std::string read_arguments(std::string_view inner) {
  ojson args = ojson::object();
  size_t pos = 0;
  while (std::optional<Element> p = next_element(inner, pos, kParam, kParamClose)) {
    pos = p->next;
    const std::optional<std::string_view> key = attribute(p->tag, "name");
    if (!key) continue;
    const bool text = attribute(p->tag, "string") == "true";
    ojson value = text ? ojson() : parse_bounded(p->inner);
    if (text || value.is_discarded()) value = std::string(p->inner);
    args[std::string(*key)] = std::move(value);
  }
  // A value cut inside a UTF-8 character (max_tokens) is replaced, not a 500.
  return args.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

// The calls of one block's body (`base`: where the body starts in the parsed text).
std::vector<ToolCall> read_invocations(std::string_view body, size_t base) {
  std::vector<ToolCall> calls;
  size_t pos = 0;
  while (std::optional<Element> inv = next_element(body, pos, kInvoke, kInvokeClose)) {
    pos = inv->next;
    const std::optional<std::string_view> name = attribute(inv->tag, "name");
    if (!name || name->empty()) continue;
    ToolCall call;
    call.name = std::string(*name);
    call.arguments = read_arguments(inv->inner);
    call.at = base + inv->at;
    calls.push_back(std::move(call));
  }
  return calls;
}

}  // namespace

bool is_dsml_template(std::string_view template_text) {
  return template_text.find("｜DSML｜") != npos;
}

void parse_dsml_calls(std::string_view text, ParsedOutput& out) {
  size_t pos = 0;
  BlockFinder blocks(text);
  while (std::optional<Block> b = blocks.next(pos)) {
    std::vector<ToolCall> calls =
        read_invocations(text.substr(b->body, b->close - b->body), b->body);
    // A block with no call in it stays in the content as written.
    out.content += text.substr(pos, (calls.empty() ? b->end : b->open) - pos);
    for (ToolCall& c : calls) out.calls.push_back(std::move(c));
    pos = b->end;
  }
  out.content += text.substr(pos);
}

}  // namespace nc::server

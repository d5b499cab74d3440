// render_jinja over llama.cpp's Jinja engine: lex, parse, fill the context (user strings marked
// as input, roles not), run, and turn the engine's string parts into text and template spans.
#include "tokenizer/jinja_render.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "core/error.h"
#include "jinja/caps.h"
#include "jinja/lexer.h"
#include "jinja/parser.h"
#include "jinja/runtime.h"
#include "jinja/value.h"
#include "json.h"  // common_json, the engine's JSON type

namespace nc {
namespace {

// What raise_exception(msg) throws becomes, after the engine wraps it with source context.
constexpr std::string_view kRaisedPrefix = "Jinja Exception: ";

common_json to_engine_json(const nlohmann::ordered_json& j) {
  return common_json::parse(j.dump());
}

// The engine marks every string of a JSON value it is given as input; roles must stay template
// text (see jinja_render.h), so the mark is taken off them again.
void unmark_roles(jinja::context& ctx) {
  jinja::value messages = ctx.get_val("messages");
  if (!jinja::is_val<jinja::value_array>(messages)) return;
  for (const jinja::value& m : messages->as_array()) {
    if (!jinja::is_val<jinja::value_object>(m)) continue;
    for (const auto& [key, val] : m->as_ordered_object()) {
      if (!jinja::is_val<jinja::value_string>(key) || key->as_string().str() != "role") continue;
      if (!jinja::is_val<jinja::value_string>(val)) continue;
      jinja::value role = val;  // shares the string the template reads
      for (jinja::string_part& p : jinja::cast_val<jinja::value_string>(role)->val_str.parts)
        p.is_input = false;
    }
  }
}

// The engine marks input strings but not the keys of input objects, which a template that loops
// over an object writes itself (GLM's and DeepSeek-V3.2's write a call's argument names): every
// key under `v` is marked here. The loop's key is the object's own key value, so the mark holds.
void mark_keys(const jinja::value& v) {
  if (jinja::is_val<jinja::value_array>(v)) {
    for (const jinja::value& e : v->as_array()) mark_keys(e);
  } else if (jinja::is_val<jinja::value_object>(v)) {
    for (const auto& [key, val] : v->as_ordered_object()) {
      if (jinja::is_val<jinja::value_string>(key)) {
        jinja::value k = key;  // shares the string the template reads
        jinja::cast_val<jinja::value_string>(k)->val_str.mark_input();
      }
      mark_keys(val);
    }
  }
}

void fill_context(jinja::context& ctx, const JinjaChatInput& in) {
  nlohmann::ordered_json user = {{"messages", in.messages}};
  if (!in.tools.is_null()) user["tools"] = in.tools;
  jinja::global_from_json(ctx, to_engine_json(user), /*mark_input=*/true);
  mark_keys(ctx.get_val("messages"));
  mark_keys(ctx.get_val("tools"));
  unmark_roles(ctx);
  // Hugging Face passes tools=None and documents=None when there are none.
  nlohmann::ordered_json own = {{"add_generation_prompt", in.add_generation_prompt},
                                {"bos_token", in.bos_token},
                                {"eos_token", in.eos_token},
                                {"documents", nullptr}};
  if (in.tools.is_null()) own["tools"] = nullptr;
  jinja::global_from_json(ctx, to_engine_json(own), /*mark_input=*/false);
  if (!in.extra.is_null()) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, in.extra.is_object(),
                "chat_template_kwargs must be an object, got {}", in.extra.type_name());
    // Names the engine defines (the server's variables, true/false/none, built-in functions)
    // are not a request's to replace: Jinja2 would not let `false` or `range` be redefined.
    for (const auto& [k, v] : in.extra.items())
      NC_CHECK_AS(ErrorKind::InvalidArgument,
                  ctx.get_val(k)->is_undefined() && !jinja::global_builtins().count(k) &&
                      k != "raise_exception" && k != "strftime_now",
                  "chat_template_kwargs: '{}' is a name the template engine defines (a variable "
                  "the server sets, a literal or a built-in function), not a request's",
                  k);
    jinja::global_from_json(ctx, to_engine_json(in.extra), /*mark_input=*/true);
    for (const auto& [k, v] : in.extra.items()) mark_keys(ctx.get_val(k));
  }
  ctx.current_time = in.now != 0 ? in.now : std::time(nullptr);
}

// The engine's error for a failed run: the template's own raise_exception, or the engine's.
[[noreturn]] void rethrow_run_error(const std::exception& e) {
  const std::string what = e.what();
  const size_t at = what.find(kRaisedPrefix);
  if (at != std::string::npos) {
    fail_as(ErrorKind::InvalidArgument, "chat template raised an exception: {}",
            what.substr(at + kRaisedPrefix.size()));
  }
  throw JinjaEngineError(what);
}

jinja::program parse_template(const std::string& template_str, std::string* source) {
  try {
    jinja::lexer lexer;
    jinja::lexer_result lexed = lexer.tokenize(template_str);
    if (source != nullptr) *source = lexed.source;
    return jinja::parse_from_tokens(lexed);
  } catch (const std::exception& e) {
    throw JinjaEngineError(std::string("cannot parse the template: ") + e.what());
  }
}

// A string as the engine's tojson writes it (quotes included).
std::string json_quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// The input's strings the engine marks (every string value but the messages' own roles), and
// its objects' keys (mark_keys), as tojson writes them.
struct InputStrings {
  std::vector<std::string> values;
  std::set<std::string> keys;
};

void collect_input_strings(const nlohmann::ordered_json& j, bool is_message, InputStrings& out) {
  if (j.is_string()) {
    if (!j.get_ref<const std::string&>().empty()) out.values.push_back(j.get<std::string>());
  } else if (j.is_array()) {
    for (const auto& e : j) collect_input_strings(e, false, out);
  } else if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (is_message && k == "role") continue;  // template text (see unmark_roles)
      if (!k.empty()) out.keys.insert(k);
      collect_input_strings(v, false, out);
    }
  }
}

// Each place the text holds `s` goes into holes.
void add_holes(const std::string& text, const std::string& s, std::vector<TextSpan>& holes) {
  for (size_t at = text.find(s); at != std::string::npos; at = text.find(s, at + 1))
    holes.push_back({at, s.size()});
}

// The engine's tojson drops the input mark: where a template span holds a user string or key as
// tojson writes it ("..." with JSON escapes), that range is taken out of the span (text, not
// markers). Only the quoted form: a bare key ("start") would cut the template's own markers.
void unmark_json_copies(const JinjaChatInput& in, JinjaRendered& r) {
  InputStrings strings;
  for (const auto& m : in.messages) collect_input_strings(m, true, strings);
  collect_input_strings(in.tools, false, strings);
  if (in.extra.is_object())  // its own keys are variable names, not text
    for (const auto& [k, v] : in.extra.items()) collect_input_strings(v, false, strings);
  std::vector<TextSpan> holes;
  for (const std::string& s : strings.values) add_holes(r.text, json_quoted(s), holes);
  for (const std::string& k : strings.keys) add_holes(r.text, json_quoted(k), holes);
  if (holes.empty()) return;
  std::sort(holes.begin(), holes.end(),
            [](const TextSpan& a, const TextSpan& b) { return a.offset < b.offset; });
  std::vector<TextSpan> kept;
  for (const TextSpan& span : r.template_spans) {
    size_t begin = span.offset;
    const size_t end = span.offset + span.length;
    for (const TextSpan& h : holes) {
      if (h.offset + h.length <= begin || h.offset >= end) continue;
      if (h.offset > begin) kept.push_back({begin, h.offset - begin});
      begin = std::max(begin, h.offset + h.length);
    }
    if (begin < end) kept.push_back({begin, end - begin});
  }
  r.template_spans = std::move(kept);
}

}  // namespace

bool jinja_supports_typed_content(const std::string& template_str) {
  static std::mutex mu;
  static std::map<size_t, bool> cache;  // by the template's hash; a few templates per process
  const size_t key = std::hash<std::string>{}(template_str);
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
  }
  bool typed = false;
  try {
    jinja::program prog = parse_template(template_str, nullptr);
    const jinja::caps caps = jinja::caps_get(prog);
    typed = caps.supports_typed_content;
  } catch (const std::exception&) {
    typed = false;  // the render itself will report what the engine cannot do
  }
  std::lock_guard<std::mutex> lock(mu);
  cache.emplace(key, typed);
  return typed;
}

void set_jinja_statement_limit(int64_t n) {
  jinja::set_statement_limit(n);
}

JinjaRendered render_jinja(const std::string& template_str, const JinjaChatInput& input) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, input.messages.is_array(),
              "chat template: messages must be a JSON array, got {}", input.messages.type_name());
  std::string source;
  const jinja::program prog = parse_template(template_str, &source);
  jinja::value_string parts;
  try {
    jinja::context ctx(source);
    fill_context(ctx, input);
    jinja::runtime runtime(ctx);
    parts = jinja::runtime::gather_string_parts(runtime.execute(prog));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    rethrow_run_error(e);
  }
  JinjaRendered out;
  for (const jinja::string_part& p : parts->val_str.parts) {
    if (!p.is_input && !p.val.empty())
      out.template_spans.push_back({out.text.size(), p.val.size()});
    out.text += p.val;
  }
  unmark_json_copies(input, out);
  return out;
}

}  // namespace nc

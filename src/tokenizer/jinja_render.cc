// render_jinja over llama.cpp's Jinja engine: lex, parse, fill the context (user strings marked
// as input, roles not), run, and turn the engine's string parts into text and template spans.
#include "tokenizer/jinja_render.h"

#include "core/error.h"
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

void fill_context(jinja::context& ctx, const JinjaChatInput& in) {
  nlohmann::ordered_json user = {{"messages", in.messages}};
  if (!in.tools.is_null()) user["tools"] = in.tools;
  jinja::global_from_json(ctx, to_engine_json(user), /*mark_input=*/true);
  unmark_roles(ctx);
  // Hugging Face passes tools=None and documents=None when there are none.
  nlohmann::ordered_json own = {{"add_generation_prompt", in.add_generation_prompt},
                                {"bos_token", in.bos_token},
                                {"eos_token", in.eos_token},
                                {"documents", nullptr}};
  if (in.tools.is_null()) own["tools"] = nullptr;
  if (in.extra.is_object()) {
    for (const auto& [k, v] : in.extra.items()) own[k] = v;
  }
  jinja::global_from_json(ctx, to_engine_json(own), /*mark_input=*/false);
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

}  // namespace

JinjaRendered render_jinja(const std::string& template_str, const JinjaChatInput& input) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, input.messages.is_array(),
              "chat template: messages must be a JSON array, got {}", input.messages.type_name());
  jinja::program prog;
  std::string source;
  try {
    jinja::lexer lexer;
    jinja::lexer_result lexed = lexer.tokenize(template_str);
    prog = jinja::parse_from_tokens(lexed);
    source = lexed.source;
  } catch (const std::exception& e) {
    throw JinjaEngineError(std::string("cannot parse the template: ") + e.what());
  }
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
  return out;
}

}  // namespace nc

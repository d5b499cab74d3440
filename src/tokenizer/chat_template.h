// Chat templates: renders a conversation into the prompt text a chat model was trained on, from
// the model's own Jinja template, as Hugging Face's apply_chat_template does (jinja_render.h:
// llama.cpp's Jinja engine, trim_blocks/lstrip_blocks, tojson as HF's, raise_exception,
// strftime_now). Messages are OpenAI-style JSON objects: role system, developer, user, assistant
// or tool; content a string, null or a list of parts ({"type": "text", "text": ...}), passed to
// the template as they are, except that text parts are joined with "\n" for templates that only
// take strings (where HF would fail); assistant tool_calls and any other field pass through.
// `tools` (a JSON list) is the template's `tools` variable. As HF does, a message's reasoning under
// reasoning_content, thinking or reasoning is given to the template under the first two names.
//
// Fallback: when the Jinja engine cannot render a template (a syntax or filter it lacks; not a
// raise_exception of the template, which is an error), the three families recognised in the
// template string are rendered by hand, for plain {role, content} messages without tools:
//   ChatML   ("<|im_start|>": SmolLM2, Qwen2, Qwen2.5), including a default system prompt that the
//            template inserts when the conversation has none;
//   Llama-3  ("<|start_header_id|>", Llama-3-Instruct's template: contents trimmed, BOS first);
//   Llama-2  ("[INST]" with "<<SYS>>": roles must alternate user/assistant after the system).
//
// render_chat_template* also say which byte ranges of the text the template wrote itself
// (markers): only special tokens inside those become control tokens (Tokenizer::encode_marked),
// so the messages' contents are always ordinary text, whatever they contain.
#pragma once
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nanocascade/chat_message.h"  // nc::ChatMessage {role, content}
#include "tokenizer/tokenizer.h"       // nc::TextSpan

namespace nc {

enum class ChatTemplateFamily { kChatML, kLlama3, kLlama2 };

// Throws nc::Error "unsupported chat template" (with a hint) when no family matches.
ChatTemplateFamily detect_chat_template(const std::string& template_str);
const char* chat_template_family_name(ChatTemplateFamily f);

// ChatML: the system prompt the template adds when messages[0] is not a system message ("" when
// it adds none).
std::string chatml_default_system(const std::string& template_str);

// The rendered prompt and the byte ranges the template itself wrote (sorted, disjoint).
struct RenderedChat {
  std::string text;
  std::vector<TextSpan> markers;
};

// Renders messages (a JSON array) with tools (a JSON array, or null for none).
// bos_token/eos_token are the texts the template's bos_token/eos_token stand for.
// add_generation_prompt appends the header of the assistant's turn. now: strftime_now's clock
// (0: the current time; tests fix it). template_kwargs: more variables (chat_template_kwargs, an
// object or null: tokenizer/jinja_render.h). Errors (nc::Error): an empty template or one neither
// the engine nor the fallback renders (Unsupported); messages that are not an array of objects, a
// role outside system/developer/user/assistant/tool (naming it), and the template's own
// raise_exception (its message) (InvalidArgument).
RenderedChat render_chat_template_json(const std::string& template_str,
                                       const nlohmann::ordered_json& messages,
                                       const nlohmann::ordered_json& tools,
                                       bool add_generation_prompt,
                                       const std::string& bos_token = "",
                                       const std::string& eos_token = "", std::time_t now = 0,
                                       const nlohmann::ordered_json& template_kwargs = nullptr);

// A tokenizer_config.json "chat_template" value: a string, or a list of {"name", "template"}:
// "tool_use" when with_tools and there is one, else "default", else the first ("" for none).
std::string select_chat_template(const nlohmann::json& value, bool with_tools);

// Plain {role, content} messages, without tools.
RenderedChat render_chat_template(const std::string& template_str,
                                  const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt, const std::string& bos_token = "",
                                  const std::string& eos_token = "");

// Leaves the last message open (Hugging Face's and vLLM's continue_final_message; Anthropic's
// prefill): the rendered chat (rendered without a generation prompt) is cut right after the last
// place it holds the final message's text without its surrounding blanks (templates that trim
// contents write it so), and after its trailing blanks where the template wrote them, so the
// output continues that text; markers past the cut go. Throws nc::Error (InvalidArgument) when the
// text is empty or the template did not write it.
void continue_final_message(RenderedChat& chat, const std::string& final_text);

// The text of render_chat_template.
std::string apply_chat_template(const std::string& template_str,
                                const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const std::string& bos_token = "",
                                const std::string& eos_token = "");

}  // namespace nc

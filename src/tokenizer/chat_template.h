// Chat templates: renders a conversation into the prompt text a chat model was trained on, as
// the model's Jinja template would, for the template families we recognise in the template
// string (no general Jinja interpreter):
//   ChatML   ("<|im_start|>": SmolLM2, Qwen2, Qwen2.5), including a default system prompt that the
//            template inserts when the conversation has none;
//   Llama-3  ("<|start_header_id|>", Llama-3-Instruct's template: contents trimmed, BOS first);
//   Llama-2  ("[INST]" with "<<SYS>>": roles must alternate user/assistant after the system).
// Anything else (Llama-3.1+ date/tool headers, Mistral, Gemma, ...) is an nc::Error.
//
// render_chat_template also says where the template's own markers (<|im_start|>, BOS, ...) are
// in the text, so that only those become control tokens (Tokenizer::encode_marked) and the
// messages' contents are always ordinary text, whatever they contain.
#pragma once
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

// Renders messages. bos_token/eos_token are the texts the template's bos_token/eos_token stand
// for (Llama-3 starts with BOS, Llama-2 wraps turns in BOS/EOS; ChatML uses neither).
// add_generation_prompt appends the header of the assistant's turn (Llama-2 has none).
// Errors: a role other than system/user/assistant (naming it), an unsupported template, and for
// Llama-2 roles that do not alternate.
// The rendered prompt and the byte ranges of the markers the template itself wrote (sorted).
struct RenderedChat {
  std::string text;
  std::vector<TextSpan> markers;
};

// As apply_chat_template, with the template's markers.
RenderedChat render_chat_template(const std::string& template_str,
                                  const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt, const std::string& bos_token = "",
                                  const std::string& eos_token = "");

// The text of render_chat_template.
std::string apply_chat_template(const std::string& template_str,
                                const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const std::string& bos_token = "",
                                const std::string& eos_token = "");

}  // namespace nc

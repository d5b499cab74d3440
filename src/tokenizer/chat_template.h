// Chat templates: renders a conversation into the prompt text a chat model was trained on, as
// the model's Jinja template would, for the template families we recognise in the template
// string (no general Jinja interpreter):
//   ChatML   ("<|im_start|>": SmolLM2, Qwen2, Qwen2.5), including a default system prompt that the
//            template inserts when the conversation has none;
//   Llama-3  ("<|start_header_id|>", Llama-3-Instruct's template: contents trimmed, BOS first);
//   Llama-2  ("[INST]" with "<<SYS>>": roles must alternate user/assistant after the system).
// Anything else (Llama-3.1+ date/tool headers, Mistral, Gemma, ...) is an nc::Error.
#pragma once
#include <string>
#include <vector>

#include "nanocascade/chat_message.h"  // nc::ChatMessage {role, content}

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
std::string apply_chat_template(const std::string& template_str,
                                const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const std::string& bos_token = "",
                                const std::string& eos_token = "");

}  // namespace nc

// TextCodec: what the engine needs from a tokenizer (encode, decode, EOS ids, the chat template),
// and the two codecs the project has: the model's own (GGUF or Hugging Face tokenizer) and a
// number codec for models without a tokenizer. Tests plug in their own (tests/fake_model.h).
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tokenizer/chat_template.h"

namespace nc {

class TextCodec {
 public:
  virtual ~TextCodec() = default;
  // Special tokens written in the text ("<|im_start|>") are parsed, as Hugging Face's
  // tokenizer(text) does: for trusted text only (tests, the tokenize tool, parse_special).
  virtual std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const = 0;
  // The text as ordinary text: no part of it becomes a control token (prompts from users).
  // Codecs without special-token texts need not override it.
  virtual std::vector<int32_t> encode_plain(const std::string& text,
                                            bool add_special_tokens) const {
    return encode(text, add_special_tokens);
  }
  // The ids of the chat prompt: the template's markers are control tokens, the messages'
  // contents are ordinary text whatever they contain. The default encodes the template's text,
  // for codecs whose template markers cannot occur in contents.
  std::vector<int32_t> encode_chat(const std::vector<ChatMessage>& messages,
                                   bool add_generation_prompt) const {
    return encode_rendered(render_chat(messages, add_generation_prompt));
  }
  // The template's output for the messages, with the spans of its markers. The default has no
  // markers: codecs whose template markers cannot occur in contents.
  virtual RenderedChat render_chat(const std::vector<ChatMessage>& messages,
                                   bool add_generation_prompt) const {
    return RenderedChat{apply_chat_template(messages, add_generation_prompt), {}};
  }
  // The ids of a rendered chat: its markers are control tokens, the rest ordinary text. The
  // default encodes the text with special-token parsing.
  virtual std::vector<int32_t> encode_rendered(const RenderedChat& chat) const {
    return encode(chat.text, false);
  }
  // Bytes of the ids' text; may end in the middle of a UTF-8 character.
  virtual std::string decode(const int32_t* ids, size_t n, bool skip_special_tokens) const = 0;
  virtual std::vector<int32_t> eos_token_ids() const = 0;
  // The prompt text for chat messages, with the model's chat template. Throws nc::Error when
  // the model has no template or a role is unknown.
  virtual std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt) const = 0;

  // OpenAI-style chat (tokenizer/chat_template.h): messages a JSON array (roles system,
  // developer, user, assistant, tool; content a string or text parts; tool_calls), tools a JSON
  // array or null. The template is the model's "tool_use" one when tools are given and it has
  // one, else its default (or the override). Keep the request's key order (ordered_json): the
  // template's tojson writes keys in that order, as HF does. template_kwargs: more variables
  // for the template (an object, or null). The defaults refuse (no template).
  virtual RenderedChat render_chat_json(const nlohmann::ordered_json& messages,
                                        const nlohmann::ordered_json& tools,
                                        bool add_generation_prompt,
                                        const nlohmann::ordered_json& template_kwargs) const;
  // The ids of render_chat_json's text: the template's markers are control tokens, every
  // string of the messages and tools ordinary text.
  std::vector<int32_t> encode_chat_json(const nlohmann::ordered_json& messages,
                                        const nlohmann::ordered_json& tools,
                                        bool add_generation_prompt) const {
    return encode_rendered(render_chat_json(messages, tools, add_generation_prompt, nullptr));
  }
  // The Jinja template render_chat_json uses (the override, else the model's tool_use one when
  // with_tools and it has one, else its default); "" when there is none. The server reads the
  // model's tool-call and reasoning formats from it.
  virtual std::string chat_template_text(bool /*with_tools*/) const { return ""; }
  // Replaces the model's chat templates (a --chat-template file's text); "" restores them.
  // Not synchronised with renders: call it before the codec is shared.
  virtual void set_chat_template_override(const std::string& template_str);
};

// The tokenizer of a model path (.gguf, tokenizer.json or a Hugging Face folder). Defined in
// text_codec.cc.
std::unique_ptr<TextCodec> make_text_codec(const std::string& path);
// For models without a tokenizer (dummy weights): text is token ids written as decimal numbers
// separated by spaces; decoding writes " <id>" per token. No EOS.
std::unique_ptr<TextCodec> make_number_codec(int vocab_size);

}  // namespace nc

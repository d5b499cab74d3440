// TextCodec over the project's tokenizer (tokenizer/tokenizer.h): from a .gguf file, a
// tokenizer.json, or a Hugging Face folder.
#include <charconv>
#include <filesystem>

#include "core/error.h"
#include "engine/text_codec.h"
#include "formats/gguf.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace nc {
namespace {

class TokenizerCodec : public TextCodec {
 public:
  explicit TokenizerCodec(std::unique_ptr<Tokenizer> tok) : tok_(std::move(tok)) {}

  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const override {
    return tok_->encode(text, add_special_tokens && tok_->add_bos_default(), true);
  }
  std::vector<int32_t> encode_plain(const std::string& text,
                                    bool add_special_tokens) const override {
    return tok_->encode(text, add_special_tokens && tok_->add_bos_default(), false);
  }
  RenderedChat render_chat(const std::vector<ChatMessage>& messages,
                           bool add_generation_prompt) const override {
    return render(messages, add_generation_prompt);
  }
  std::vector<int32_t> encode_rendered(const RenderedChat& chat) const override {
    // The template writes BOS itself where it wants one.
    return tok_->encode_marked(chat.text, chat.markers, false);
  }
  RenderedChat render_chat_json(const nlohmann::ordered_json& messages,
                                const nlohmann::ordered_json& tools, bool add_generation_prompt,
                                const nlohmann::ordered_json& template_kwargs) const override {
    const bool with_tools = tools.is_array() && !tools.empty();
    return render_chat_template_json(template_for(with_tools), messages, tools,
                                     add_generation_prompt, piece(tok_->bos_id()),
                                     piece(tok_->eos_id()), 0, template_kwargs);
  }
  std::string chat_template_text(bool with_tools) const override {
    return override_.empty() ? tok_->chat_template(with_tools) : override_;
  }
  void set_chat_template_override(const std::string& template_str) override {
    override_ = template_str;
  }
  // Ids past the tokenizer's last token are the rows a model pads its embedding with (Qwen2.5:
  // 151,665 tokens in 151,936 rows): they have no text, as in Hugging Face's decode. Sampled
  // (or forced by logit_bias) they must not fail the step of every running request.
  std::string decode(const int32_t* ids, size_t n, bool skip_special_tokens) const override {
    std::vector<int32_t> known;
    known.reserve(n);
    for (size_t i = 0; i < n; ++i)
      if (ids[i] < tok_->vocab_size()) known.push_back(ids[i]);
    return tok_->decode(known, skip_special_tokens);
  }
  std::vector<int32_t> eos_token_ids() const override { return tok_->eos_ids(); }
  std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt) const override {
    return render(messages, add_generation_prompt).text;
  }

 private:
  RenderedChat render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    return render_chat_template(template_for(false), messages, add_generation_prompt,
                                piece(tok_->bos_id()), piece(tok_->eos_id()));
  }
  const std::string& template_for(bool with_tools) const {
    const std::string& t = override_.empty() ? tok_->chat_template(with_tools) : override_;
    NC_CHECK_AS(ErrorKind::Unsupported, !t.empty(),
                "this model has no chat template: give one (--chat-template FILE) or use "
                "completion prompts");
    return t;
  }
  std::string piece(int32_t id) const { return id >= 0 ? tok_->token_piece(id) : std::string(); }

  std::unique_ptr<Tokenizer> tok_;
  std::string override_;  // set_chat_template_override
};

// Token ids as decimal numbers, for models without a tokenizer.
class NumberCodec : public TextCodec {
 public:
  explicit NumberCodec(int vocab) : vocab_(vocab) {}

  std::vector<int32_t> encode(const std::string& text, bool) const override {
    std::vector<int32_t> ids;
    const char* p = text.data();
    const char* end = p + text.size();
    while (p < end) {
      if (*p == ' ' || *p == '\n' || *p == '\t' || *p == ',') {
        ++p;
        continue;
      }
      int32_t id = 0;
      const auto [next, ec] = std::from_chars(p, end, id);
      NC_CHECK_AS(ErrorKind::InvalidArgument, ec == std::errc() && id >= 0 && id < vocab_,
                  "this model has no tokenizer: the prompt must be token ids in [0, {}) separated "
                  "by spaces, got '{}'",
                  vocab_, text);
      ids.push_back(id);
      p = next;
    }
    return ids;
  }
  std::string decode(const int32_t* ids, size_t n, bool) const override {
    std::string s;
    for (size_t i = 0; i < n; ++i) {
      s += ' ';
      s += std::to_string(ids[i]);
    }
    return s;
  }
  std::vector<int32_t> eos_token_ids() const override { return {}; }
  std::string apply_chat_template(const std::vector<ChatMessage>&, bool) const override {
    fail_as(ErrorKind::Unsupported, "this model has no tokenizer, hence no chat template");
  }

 private:
  int vocab_;
};

}  // namespace

RenderedChat TextCodec::render_chat_json(const nlohmann::ordered_json&,
                                         const nlohmann::ordered_json&, bool,
                                         const nlohmann::ordered_json&) const {
  fail_as(ErrorKind::Unsupported, "this model's text codec has no chat template");
}

void TextCodec::set_chat_template_override(const std::string&) {
  fail_as(ErrorKind::Unsupported, "this model's text codec takes no chat template");
}

std::unique_ptr<TextCodec> make_number_codec(int vocab_size) {
  return std::make_unique<NumberCodec>(vocab_size);
}

std::unique_ptr<TextCodec> make_text_codec(const std::string& path) {
  NC_CHECK_AS(ErrorKind::NotFound, std::filesystem::exists(path), "tokenizer: '{}' not found",
              path);
  std::unique_ptr<Tokenizer> tok;
  if (std::filesystem::is_directory(path) || path.ends_with(".json")) {
    tok = Tokenizer::from_hf_json(path);
  } else {
    tok = Tokenizer::from_gguf(GgufFile::open(path));
  }
  return std::make_unique<TokenizerCodec>(std::move(tok));
}

}  // namespace nc

// Building a Tokenizer from Hugging Face's tokenizer.json (+ tokenizer_config.json): model BPE,
// byte-level or SentencePiece-style, with the normalizers and pre-tokenizers listed in
// tokenizer.h; any other component is an nc::Error naming it, never a silent approximation.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/json_file.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/pre_types.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

namespace nc {

namespace {

// Token ids are int32, and a vocabulary past 2^24 tokens is not a real one: its size would be a
// vector of that many strings, from one malformed id.
constexpr int64_t kMaxTokenId = int64_t{1} << 24;

using nlohmann::json;
using tok_detail::find_token;
using tok_detail::split_merge;

constexpr const char* kSpmSpaceUtf8 = "\xE2\x96\x81";
// HF's Punctuation pre-tokenizer: Unicode punctuation and ASCII's punctuation characters.
constexpr const char* kPunctuation = R"re([\p{P}!-/:-@\[-`{-~])re";
constexpr const char* kGpt2Regex =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";

// What the normalizer and pre-tokenizer ask for beyond the split steps.
struct JsonPipeline {
  bool byte_level = false;     // a ByteLevel pre-tokenizer (GPT-2 byte mapping)
  bool escape_spaces = false;  // ' ' becomes U+2581 (Replace normalizer or Metaspace)
  bool prepend = false;        // U+2581 prepended (Prepend normalizer or Metaspace)
  bool prepend_first_only = false;
  bool nfc = false;  // an NFC normalizer
};

bool is_byte_token(const std::string& t) {
  return t.size() == 6 && t.rfind("<0x", 0) == 0 && t[5] == '>';
}

// A normalizer node: NFC, Replace(' ' -> U+2581), Prepend(U+2581), and Sequences of them.
void parse_normalizer(const json& node, JsonPipeline& pipe) {
  if (node.is_null()) return;
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    for (const json& sub : node.at("normalizers")) parse_normalizer(sub, pipe);
  } else if (type == "NFC") {
    pipe.nfc = true;
  } else if (type == "Replace") {
    const json& pat = node.at("pattern");
    const std::string from = pat.contains("String") ? pat.at("String").get<std::string>() : "";
    const std::string to = node.value("content", "");
    NC_CHECK_AS(ErrorKind::Unsupported, from == " " && to == kSpmSpaceUtf8,
                "unsupported tokenizer.json Replace normalizer ('{}' -> '{}'): only ' ' -> "
                "U+2581",
                pat.dump(), to);
    pipe.escape_spaces = true;
  } else if (type == "Prepend") {
    NC_CHECK_AS(ErrorKind::Unsupported, node.value("prepend", "") == kSpmSpaceUtf8,
                "unsupported tokenizer.json Prepend normalizer '{}': only U+2581",
                node.value("prepend", ""));
    pipe.prepend = true;
  } else {
    fail_as(ErrorKind::Unsupported, "unsupported tokenizer.json normalizer '{}'", type);
  }
}

PreSplit split_of(const json& node) {
  PreSplit s;
  const json& pat = node.at("pattern");
  if (pat.contains("Regex")) {
    s.pattern = pat.at("Regex").get<std::string>();
  } else {
    const std::string lit = pat.at("String").get<std::string>();
    NC_CHECK_AS(ErrorKind::Unsupported, lit.find("\\E") == std::string::npos,
                "unsupported Split literal '{}'", lit);
    s.pattern = "\\Q" + lit + "\\E";
  }
  s.behavior = split_behavior_from_name(node.value("behavior", "Isolated"));
  s.invert = node.value("invert", false);
  return s;
}

// A pre_tokenizer node of tokenizer.json as split steps (appended to spec.pre_splits).
void parse_pre_tokenizer(const json& node, TokenizerSpec& spec, JsonPipeline& pipe) {
  if (node.is_null()) return;
  const std::string type = node.value("type", "");
  auto& steps = spec.pre_splits;
  if (type == "Sequence") {
    for (const json& sub : node.at("pretokenizers")) parse_pre_tokenizer(sub, spec, pipe);
  } else if (type == "ByteLevel") {
    pipe.byte_level = true;
    if (node.value("use_regex", true)) steps.push_back({kGpt2Regex});
    spec.add_prefix_space = node.value("add_prefix_space", false);
  } else if (type == "Split") {
    steps.push_back(split_of(node));
  } else if (type == "Digits") {
    steps.push_back({node.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)"});
  } else if (type == "Punctuation") {
    steps.push_back({kPunctuation, split_behavior_from_name(node.value("behavior", "Isolated"))});
  } else if (type == "Whitespace") {  // words and runs of other non-spaces; spaces dropped
    steps.push_back({R"(\w+|[^\w\s]+)", SplitBehavior::kRemoved, /*invert=*/true});
  } else if (type == "WhitespaceSplit") {
    steps.push_back({R"(\s)", SplitBehavior::kRemoved});
  } else if (type == "Metaspace") {
    NC_CHECK_AS(ErrorKind::Unsupported, node.value("replacement", "") == kSpmSpaceUtf8,
                "unsupported Metaspace replacement '{}': only U+2581",
                node.value("replacement", ""));
    pipe.escape_spaces = true;
    const std::string scheme =
        node.value("prepend_scheme", node.value("add_prefix_space", true) ? "always" : "never");
    NC_CHECK_AS(ErrorKind::Unsupported,
                scheme == "always" || scheme == "first" || scheme == "never",
                "unsupported Metaspace prepend_scheme '{}'", scheme);
    pipe.prepend = scheme != "never";
    pipe.prepend_first_only = scheme == "first";
    if (node.value("split", true)) steps.push_back({kSpmSpaceUtf8, SplitBehavior::kMergedWithNext});
  } else {
    fail_as(ErrorKind::Unsupported, "unsupported pre_tokenizer type '{}' in tokenizer.json", type);
  }
}

// "bos_token" of tokenizer_config.json: a string or an AddedToken object.
std::string token_name(const json& cfg, const char* key) {
  if (!cfg.contains(key) || cfg.at(key).is_null()) return "";
  const json& v = cfg.at(key);
  if (v.is_string()) return v.get<std::string>();
  return v.value("content", "");
}

// A token's id: an integer in [0, kMaxTokenId), checked before it sizes the vocabulary.
int64_t checked_token_id(const json& id, const std::string& token) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, id.is_number_integer(),
              "tokenizer.json token '{}' has id {}, not an integer", token, id.dump());
  const int64_t i = id.is_number_unsigned() && id.get<uint64_t>() > uint64_t(INT64_MAX)
                        ? INT64_MAX
                        : id.get<int64_t>();
  NC_CHECK_AS(ErrorKind::InvalidArgument, i >= 0 && i < kMaxTokenId,
              "tokenizer.json token '{}' has id {} (ids are 0..{})", token, id.dump(),
              kMaxTokenId - 1);
  return i;
}

// generation_config.json's eos_token_id (an id or a list), which transformers' generate() and
// vLLM stop on beside the tokenizer's eos_token: Llama-3-Instruct's <|end_of_text|> and
// <|eom_id|> beside <|eot_id|>, Qwen2.5's <|endoftext|> beside <|im_end|>. Ids outside the
// vocabulary are left out (a padded embedding row decodes to nothing).
void add_generation_eos(const json& gen, TokenizerSpec& spec) {
  const json eos = gen.is_object() ? gen.value("eos_token_id", json()) : json();
  auto add = [&](const json& id) {
    if (id.is_number_integer() && id.get<int64_t>() >= 0 &&
        id.get<int64_t>() < int64_t(spec.tokens.size()))
      spec.extra_eos_ids.push_back(int32_t(id.get<int64_t>()));
  };
  if (eos.is_array()) {
    for (const json& id : eos) add(id);
  } else {
    add(eos);
  }
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_hf_json(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path file = path;
  if (fs::is_directory(file)) file /= "tokenizer.json";
  NC_CHECK_AS(ErrorKind::NotFound, fs::exists(file), "tokenizer file {} does not exist",
              file.string());
  const json j = read_json_file(file);
  json cfg = json::object();
  const fs::path cfg_path = file.parent_path() / "tokenizer_config.json";
  if (fs::exists(cfg_path)) cfg = read_json_file(cfg_path);

  TokenizerSpec spec;
  spec.name = "hf-json";
  try {
    const json& model = j.at("model");
    NC_CHECK_AS(ErrorKind::Unsupported, model.value("type", "BPE") == "BPE",
                "unsupported tokenizer.json model type '{}' (only BPE)", model.value("type", ""));
    JsonPipeline pipe;
    parse_normalizer(j.value("normalizer", json()), pipe);
    parse_pre_tokenizer(j.value("pre_tokenizer", json()), spec, pipe);
    const bool byte_fallback = model.value("byte_fallback", false);
    if (pipe.byte_level) {
      NC_CHECK_AS(ErrorKind::Unsupported, !pipe.escape_spaces && !byte_fallback,
                  "tokenizer.json mixes ByteLevel with SentencePiece spaces or byte_fallback");
    } else {
      // SentencePiece-style: merges over UTF-8 characters. A space the normalizer leaves alone
      // is an ordinary character; Metaspace or Replace(' ', '▁') writes it U+2581.
      spec.kind = TokenizerKind::kUtf8Bpe;
      spec.escape_spaces = pipe.escape_spaces;
      spec.add_prefix_space = pipe.prepend;
      spec.prefix_first_only = pipe.prepend_first_only;
    }
    spec.ignore_merges = model.value("ignore_merges", false);
    spec.nfc = pipe.nfc;

    // Ids may leave gaps (between the vocabulary and added tokens): those become unused. Each
    // id is checked before it sizes anything (an id of 2^63 - 1 must not wrap the size).
    int64_t n = 0;
    for (const auto& [tok, id] : model.at("vocab").items())
      n = std::max(n, checked_token_id(id, tok) + 1);
    const json added = j.value("added_tokens", json::array());
    for (const json& a : added)
      n = std::max(n, checked_token_id(a.at("id"), a.value("content", "")) + 1);
    NC_CHECK_AS(ErrorKind::InvalidArgument, n > 0, "tokenizer.json has no tokens");
    spec.tokens.assign(n, "");
    spec.types.assign(n, TokenType::kUnused);
    for (const auto& [tok, id] : model.at("vocab").items()) {
      const int64_t i = checked_token_id(id, tok);
      spec.tokens[i] = tok;
      spec.types[i] = byte_fallback && is_byte_token(tok) ? TokenType::kByte : TokenType::kNormal;
    }
    for (const json& a : added) {
      const int64_t i = checked_token_id(a.at("id"), a.value("content", ""));
      spec.tokens[i] = a.at("content").get<std::string>();
      spec.types[i] = a.value("special", false) ? TokenType::kControl : TokenType::kUserDefined;
    }
    for (const json& m : model.at("merges")) {
      if (m.is_string())
        spec.merges.push_back(split_merge(m.get<std::string>()));
      else
        spec.merges.emplace_back(m.at(0).get<std::string>(), m.at(1).get<std::string>());
    }
    if (model.contains("unk_token") && model.at("unk_token").is_string())
      spec.unk_id = find_token(spec, model.at("unk_token").get<std::string>());

    // BOS: tokenizer_config.json names it; the post-processor tells whether it is added.
    spec.bos_id = find_token(spec, token_name(cfg, "bos_token"));
    spec.eos_id = find_token(spec, token_name(cfg, "eos_token"));
    const fs::path gen_path = file.parent_path() / "generation_config.json";
    if (fs::exists(gen_path)) add_generation_eos(read_json_file(gen_path), spec);
    bool add_bos = false;
    const json& post = j.value("post_processor", json());
    if (!post.is_null() && post.value("type", "") == "TemplateProcessing") {
      const json& single = post.at("single");
      if (!single.empty() && single[0].contains("SpecialToken")) {
        const int32_t id =
            find_token(spec, single[0].at("SpecialToken").at("id").get<std::string>());
        if (id >= 0) {
          add_bos = true;
          if (spec.bos_id < 0) spec.bos_id = id;
        }
      }
    }
    if (cfg.contains("add_bos_token") && cfg.at("add_bos_token").is_boolean())
      add_bos = cfg.at("add_bos_token").get<bool>();
    spec.add_bos = add_bos && spec.bos_id >= 0;
    const json tmpl = cfg.value("chat_template", json());
    spec.chat_template = select_chat_template(tmpl, false);
    const std::string tool_use = select_chat_template(tmpl, true);
    if (tool_use != spec.chat_template) spec.chat_template_tool_use = tool_use;
    // Newer transformers save the template beside the config instead of inside it.
    const fs::path jinja = file.parent_path() / "chat_template.jinja";
    if (spec.chat_template.empty() && fs::exists(jinja)) {
      std::ifstream f(jinja, std::ios::binary);
      std::stringstream ss;
      ss << f.rdbuf();
      spec.chat_template = ss.str();
    }
  } catch (const json::exception& e) {
    fail_as(ErrorKind::InvalidArgument, "malformed tokenizer.json {}: {}", file.string(), e.what());
  }
  return std::make_unique<Tokenizer>(std::move(spec));
}

}  // namespace nc

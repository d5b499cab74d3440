// Building a Tokenizer from GGUF metadata or from Hugging Face's tokenizer.json.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/json_file.h"
#include "formats/gguf.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace nc {

namespace {

// Pre-tokenizer regexes of the byte-level families, as their Hugging Face tokenizer.json files
// write them (the Oniguruma syntax used there is also valid PCRE2).
constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// StarCoder / SmolLM: Digits(individual_digits=true), then ByteLevel's GPT-2 regex.
constexpr const char* kSingleDigitRegex = R"(\p{N})";

enum class Family { kGpt2, kLlama3, kQwen2, kStarcoder };

struct FamilyName {
  const char* name;
  Family family;
};
constexpr FamilyName kFamilies[] = {
    {"default", Family::kGpt2},        {"gpt-2", Family::kGpt2},
    {"gpt2", Family::kGpt2},           {"phi-2", Family::kGpt2},
    {"llama-bpe", Family::kLlama3},    {"llama3", Family::kLlama3},
    {"llama-v3", Family::kLlama3},     {"smaug-bpe", Family::kLlama3},
    {"qwen2", Family::kQwen2},         {"deepseek-r1-qwen", Family::kQwen2},
    {"starcoder", Family::kStarcoder}, {"smollm", Family::kStarcoder},
    {"refact", Family::kStarcoder},
};

Family family_of(const std::string& pre) {
  for (const auto& f : kFamilies)
    if (pre == f.name) return f.family;
  std::string known;
  for (const auto& f : kFamilies) known += std::string(known.empty() ? "" : ", ") + f.name;
  fail_as(ErrorKind::Unsupported,
          "unsupported tokenizer pre-tokenizer '{}' (tokenizer.ggml.pre); known: {}", pre, known);
}

std::vector<std::string> regexes_of(Family f) {
  switch (f) {
    case Family::kGpt2:
      return {kGpt2Regex};
    case Family::kLlama3:
      return {kLlama3Regex};
    case Family::kQwen2:
      return {kQwen2Regex};
    case Family::kStarcoder:
      return {kSingleDigitRegex, kGpt2Regex};
  }
  return {kGpt2Regex};
}

std::pair<std::string, std::string> split_merge(const std::string& m) {
  // The two parts never hold a raw space (byte-level maps it to U+0120); search from 1 so a
  // part made of a lone space in a hand-written file still splits sensibly.
  const size_t sp = m.find(' ', 1);
  NC_CHECK_AS(ErrorKind::InvalidArgument, sp != std::string::npos,
              "tokenizer merge '{}' is not two tokens separated by a space", m);
  return {m.substr(0, sp), m.substr(sp + 1)};
}

int32_t find_token(const TokenizerSpec& spec, const std::string& text) {
  for (size_t i = 0; i < spec.tokens.size(); ++i)
    if (spec.tokens[i] == text) return static_cast<int32_t>(i);
  return -1;
}

}  // namespace

std::vector<std::string> Tokenizer::pre_regexes_for(const std::string& pre_name) {
  return regexes_of(family_of(pre_name));
}

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& gguf) {
  TokenizerSpec spec;
  const std::string model = gguf.get_string("tokenizer.ggml.model");
  spec.tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  const size_t n = spec.tokens.size();
  if (gguf.has("tokenizer.ggml.token_type")) {
    const std::vector<int64_t> types = gguf.get_int_array("tokenizer.ggml.token_type");
    NC_CHECK_AS(ErrorKind::InvalidArgument, types.size() == n,
                "tokenizer.ggml.token_type has {} entries for {} tokens", types.size(), n);
    spec.types.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      NC_CHECK_AS(ErrorKind::InvalidArgument, types[i] >= 0 && types[i] <= 6,
                  "tokenizer.ggml.token_type[{}] = {} is not a type", i, types[i]);
      spec.types.push_back(static_cast<TokenType>(types[i]));
    }
  }
  bool add_bos_default = false;
  if (model == "gpt2") {
    spec.kind = TokenizerKind::kByteLevelBpe;
    spec.name = gguf.get_string("tokenizer.ggml.pre", "default");
    const Family fam = family_of(spec.name);
    spec.pre_regexes = regexes_of(fam);
    spec.ignore_merges = fam == Family::kLlama3;
    add_bos_default = fam == Family::kLlama3;
    for (const std::string& m : gguf.get_string_array("tokenizer.ggml.merges"))
      spec.merges.push_back(split_merge(m));
  } else if (model == "llama") {
    spec.kind = TokenizerKind::kSentencePieceBpe;
    spec.name = "llama-spm";
    spec.add_prefix_space = gguf.get_bool("tokenizer.ggml.add_space_prefix", true);
    add_bos_default = true;
    if (gguf.has("tokenizer.ggml.scores")) {
      const std::vector<double> scores = gguf.get_float_array("tokenizer.ggml.scores");
      NC_CHECK_AS(ErrorKind::InvalidArgument, scores.size() == n,
                  "tokenizer.ggml.scores has {} entries for {} tokens", scores.size(), n);
      spec.scores.assign(scores.begin(), scores.end());
    }
  } else {
    fail_as(ErrorKind::Unsupported,
            "unsupported tokenizer.ggml.model '{}' (supported: gpt2 = byte-level BPE, llama = "
            "SentencePiece BPE)",
            model);
  }
  spec.bos_id = static_cast<int32_t>(gguf.get_int("tokenizer.ggml.bos_token_id", -1));
  spec.eos_id = static_cast<int32_t>(gguf.get_int("tokenizer.ggml.eos_token_id", -1));
  spec.unk_id = static_cast<int32_t>(gguf.get_int("tokenizer.ggml.unknown_token_id", -1));
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    if (gguf.has(key)) spec.extra_eos_ids.push_back(static_cast<int32_t>(gguf.get_int(key)));
  }
  spec.add_bos = gguf.get_bool("tokenizer.ggml.add_bos_token", add_bos_default);
  spec.chat_template = gguf.get_string("tokenizer.chat_template", "");
  // Named templates are stored as tokenizer.chat_template.<name>.
  spec.chat_template_tool_use = gguf.get_string("tokenizer.chat_template.tool_use", "");
  return std::make_unique<Tokenizer>(std::move(spec));
}

namespace {

using nlohmann::json;

// A pre_tokenizer node of tokenizer.json as regexes (appended to out).
void parse_pre_tokenizer(const json& node, TokenizerSpec& spec, bool& byte_level) {
  if (node.is_null()) return;
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    for (const json& sub : node.at("pretokenizers")) parse_pre_tokenizer(sub, spec, byte_level);
  } else if (type == "ByteLevel") {
    byte_level = true;
    if (node.value("use_regex", true)) spec.pre_regexes.push_back(kGpt2Regex);
    spec.add_prefix_space = node.value("add_prefix_space", false);
  } else if (type == "Split") {
    NC_CHECK_AS(ErrorKind::Unsupported,
                node.value("behavior", "") == "Isolated" && !node.value("invert", false),
                "unsupported Split pre-tokenizer (behavior '{}', invert {}): only Isolated",
                node.value("behavior", ""), node.value("invert", false));
    const json& pat = node.at("pattern");
    if (pat.contains("Regex")) {
      spec.pre_regexes.push_back(pat.at("Regex").get<std::string>());
    } else {
      std::string lit = pat.at("String").get<std::string>();
      NC_CHECK_AS(ErrorKind::Unsupported, lit.find("\\E") == std::string::npos,
                  "unsupported Split literal '{}'", lit);
      spec.pre_regexes.push_back("\\Q" + lit + "\\E");
    }
  } else if (type == "Digits") {
    spec.pre_regexes.push_back(node.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
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
    NC_CHECK_AS(
        ErrorKind::Unsupported, !model.value("byte_fallback", false),
        "SentencePiece-style tokenizer.json (byte_fallback) is not supported; load the GGUF");
    const json& normalizer = j.value("normalizer", json());
    // NFC is accepted but not applied: text is assumed to be NFC already (as llama.cpp does).
    NC_CHECK_AS(ErrorKind::Unsupported,
                normalizer.is_null() || normalizer.value("type", "") == "NFC",
                "unsupported tokenizer.json normalizer '{}'", normalizer.value("type", ""));
    bool byte_level = false;
    parse_pre_tokenizer(j.value("pre_tokenizer", json()), spec, byte_level);
    NC_CHECK_AS(ErrorKind::Unsupported, byte_level,
                "tokenizer.json has no ByteLevel pre-tokenizer: only byte-level BPE is "
                "supported from tokenizer.json");
    spec.ignore_merges = model.value("ignore_merges", false);

    // Ids may leave gaps (between the vocabulary and added tokens): those become unused.
    int64_t n = 0;
    for (const auto& [tok, id] : model.at("vocab").items())
      n = std::max<int64_t>(n, id.get<int64_t>() + 1);
    const json added = j.value("added_tokens", json::array());
    for (const json& a : added) n = std::max<int64_t>(n, a.at("id").get<int64_t>() + 1);
    NC_CHECK_AS(ErrorKind::InvalidArgument, n > 0 && n < (int64_t{1} << 31),
                "tokenizer.json vocabulary size {} is invalid", n);
    spec.tokens.assign(n, "");
    spec.types.assign(n, TokenType::kUnused);
    for (const auto& [tok, id] : model.at("vocab").items()) {
      const int64_t i = id.get<int64_t>();
      NC_CHECK_AS(ErrorKind::InvalidArgument, i >= 0, "tokenizer.json token '{}' has a negative id",
                  tok);
      spec.tokens[i] = tok;
      spec.types[i] = TokenType::kNormal;
    }
    for (const json& a : added) {
      const int64_t i = a.at("id").get<int64_t>();
      NC_CHECK_AS(ErrorKind::InvalidArgument, i >= 0,
                  "tokenizer.json added token has a negative id");
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

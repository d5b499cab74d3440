// Building a Tokenizer from GGUF metadata (tokenizer.ggml.*).
#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/pre_types.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

namespace nc {

using tok_detail::split_merge;

std::vector<std::string> Tokenizer::pre_regexes_for(const std::string& pre_name) {
  std::vector<std::string> out;
  for (const PreSplit& s : pre_tokenizer_config(pre_name).steps) out.push_back(s.pattern);
  return out;
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
  if (model == "gpt2" || model == "gemma4") {
    // gemma4 is SentencePiece-style BPE by merges; its files name no pre-tokenizer.
    spec.name = model == "gemma4" ? "gemma4" : gguf.get_string("tokenizer.ggml.pre", "default");
    const PreTokenizerConfig pre = pre_tokenizer_config(spec.name);
    spec.kind = pre.raw_utf8 ? TokenizerKind::kUtf8Bpe : TokenizerKind::kByteLevelBpe;
    spec.pre_splits = pre.steps;
    spec.ignore_merges = pre.ignore_merges;
    spec.whole_newlines = pre.whole_newlines;
    spec.escape_spaces = pre.escape_spaces;
    add_bos_default = pre.add_bos;
    if (pre.raw_utf8)
      spec.add_prefix_space = gguf.get_bool("tokenizer.ggml.add_space_prefix", false);
    NC_CHECK_AS(ErrorKind::Unsupported, gguf.has("tokenizer.ggml.merges"),
                "tokenizer.ggml.model '{}' without tokenizer.ggml.merges is not supported", model);
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
            "SentencePiece BPE, gemma4 = SentencePiece-style BPE by merges)",
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

}  // namespace nc

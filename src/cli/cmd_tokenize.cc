// nanocascade tokenize: the token ids of a text for a model or a vocabulary file (a .gguf, a
// tokenizer.json, or a Hugging Face folder), like llama.cpp's llama-tokenize.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <memory>

#include "cli/cli_common.h"
#include "core/error.h"
#include "engine/text_codec.h"

namespace nc::cli {
namespace {

struct TokenizeArgs {
  std::string model;
  std::string text;
  bool no_bos = false;
  bool pieces = false;
};

void run_tokenize(const TokenizeArgs& a) {
  const std::string path = a.model.empty() ? EngineConfig::default_model_path() : a.model;
  std::unique_ptr<TextCodec> codec = make_text_codec(path);
  const std::vector<int32_t> ids = codec->encode(a.text, !a.no_bos);
  if (!a.pieces) {
    fmt::print("[{}]\n", fmt::join(ids, ", "));
    return;
  }
  for (int32_t id : ids) fmt::print("{:6} -> '{}'\n", id, codec->decode(&id, 1, false));
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand("tokenize", "print the token ids of a text");
  cmd->add_option("text", args->text, "text to tokenize")->required();
  cmd->add_option("--model,-m,--vocab", args->model,
                  "model or vocabulary: .gguf, tokenizer.json or HF folder (default: SmolLM2)");
  cmd->add_flag("--no-bos", args->no_bos, "do not add the BOS token");
  cmd->add_flag("--pieces", args->pieces, "print each id with its text");
  cmd->callback([args] { run_tokenize(*args); });
}

}  // namespace nc::cli

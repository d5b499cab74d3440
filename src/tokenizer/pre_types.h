// The pre-tokenizers named by GGUF's tokenizer.ggml.pre: every name llama.cpp's vocabulary loader
// recognises (llama-cpp-python 0.3.36), mapped to the split chain of the model's own
// tokenizer.json (regexes as Hugging Face writes them, run by PCRE2) and the flags that go with
// it. An unknown name is an nc::Error naming it: a wrong guess would silently mis-tokenize.
#pragma once
#include <string>
#include <vector>

#include "tokenizer/pretokenizer.h"

namespace nc {

struct PreTokenizerConfig {
  std::string name;             // the tokenizer.ggml.pre value looked up
  std::vector<PreSplit> steps;  // applied in order before byte-level BPE
  bool ignore_merges = false;   // a pre-token that is itself a token is emitted whole
  bool add_bos = false;         // BOS added when the file has no tokenizer.ggml.add_bos_token
  // SentencePiece-style BPE (Gemma 4): merges run on raw UTF-8 with spaces written U+2581 and
  // <0xNN> tokens for bytes; otherwise GPT-2's byte-to-unicode mapping is used.
  bool raw_utf8 = false;
  bool escape_spaces = false;   // raw_utf8: spaces written U+2581 first
  bool whole_newlines = false;  // a pre-token of newlines only that is a token stays whole
};

// The configuration for a tokenizer.ggml.pre value ("" = the key is absent, as "default").
PreTokenizerConfig pre_tokenizer_config(const std::string& name);
// Every accepted name, in table order (for messages and tests).
std::vector<std::string> known_pre_tokenizers();

}  // namespace nc

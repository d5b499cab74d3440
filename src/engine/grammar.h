// Structured output's grammars (nanocascade/engine.h, StructuredOutput) on xgrammar's C++
// library (cmake/xgrammar.cmake; its headers stay in grammar.cc).
//
// GrammarCache compiles a StructuredOutput against the model's vocabulary once and keeps it,
// keyed by (kind, text). It is thread-safe: the server compiles a request's grammar on its HTTP
// thread (Engine::compile_grammar) so that a slow or bad schema never holds the engine's step
// loop; the engine then finds it cached. A compilation runs on a thread of its own and is waited
// for at most the time limit: past it the request is refused (InvalidArgument) while the
// compilation finishes in the background, and a later request with the same text waits on the
// same compilation. A failure is cached too (the same bad schema fails at once the next time).
// At most 1024 entries: past that, the finished ones are dropped (running ones stay).
//
// The vocabulary is given to xgrammar as each token's bytes (VocabType RAW), taken from the
// codec: the bytes token t adds after a plain token (so SentencePiece's leading space is kept);
// special tokens (empty when special tokens are skipped) are "", which xgrammar never allows
// inside a grammar; the EOS ids are its stop tokens, allowed once the grammar is complete. Ids at
// or past the tokenizer's vocabulary (padding rows of the model) are special.
// A codec without text (random weights, `--load-format dummy`: token ids written as numbers;
// its encode fails) gets a synthetic vocabulary instead, so that a grammar can still be forced on
// such a model (`nanocascade bench --json-schema`): ids below 256 stand for their byte, the others
// for 2 to 8 printable characters drawn from the id. The output's text then stays numbers; what
// the grammar holds is the sequence of ids read through that vocabulary, and the mask costs are
// those of a vocabulary of the model's size.
//
// TokenGrammar is one request's matcher: fill_bitmask() gives the allowed next tokens, accept()
// advances by the token drawn. Not thread-safe (one request, the engine thread).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/text_codec.h"
#include "nanocascade/engine.h"

namespace nc {

// 32-bit words of a token bitmask over `vocab` ids: bit (id % 32) of word id / 32 set = allowed.
inline int bitmask_words(int vocab) {
  return (vocab + 31) / 32;
}

class TokenGrammar {
 public:
  struct Impl;
  explicit TokenGrammar(std::unique_ptr<Impl> impl);
  ~TokenGrammar();
  // The allowed next tokens, into bitmask_words(vocab) words.
  void fill_bitmask(std::span<int32_t> words);
  // Advances by `token`; false (state unchanged) when the grammar does not allow it.
  bool accept(int32_t token);
  // The grammar is complete and its stop token was accepted (or, for a vocabulary without EOS,
  // it is complete and nothing may follow).
  bool terminated() const;

 private:
  std::unique_ptr<Impl> impl_;
};

class GrammarCache {
 public:
  // `vocab`: the model's logit rows (>= the codec's vocabulary).
  GrammarCache(const TextCodec& codec, int vocab, double timeout_s);
  ~GrammarCache();
  GrammarCache(const GrammarCache&) = delete;
  GrammarCache& operator=(const GrammarCache&) = delete;

  // Compiles `s` or finds it compiled; throws nc::Error (InvalidArgument) naming the problem.
  void compile(const StructuredOutput& s);
  // A fresh matcher of `s` (compiling it first when needed).
  std::unique_ptr<TokenGrammar> matcher(const StructuredOutput& s);
  // Grammars compiled or being compiled.
  size_t size() const;
  // Tests: `hook` runs on each compilation's thread before it compiles (to hold compilations
  // open, so that what happens while they run does not depend on the machine's speed).
  void set_compile_hook(std::function<void()> hook);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace nc

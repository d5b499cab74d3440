// Incremental detokenization and stop strings.
//
// IncrementalDetokenizer turns a stream of token ids into text deltas that never end in half a
// UTF-8 character. It decodes a small window of ids twice (with and without the newest ones) and
// emits the difference, so tokenizers whose decode depends on the neighbours (SentencePiece's
// leading space) come out right; a few prompt tokens seed the window.
//
// StopStringMatcher holds back text that could be the start of a stop string and cuts the text
// at the first complete match (the stop string is not emitted).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/text_codec.h"

namespace nc {

// Length of the longest prefix of s that ends on a UTF-8 character boundary (drops a trailing
// incomplete multi-byte sequence).
size_t utf8_complete_length(const std::string& s);

class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const TextCodec& codec, const std::vector<int32_t>& prompt,
                         bool skip_special_tokens);
  // New complete text after appending `id` (may be empty while a character is incomplete; the
  // bytes that finish a character the prompt began are dropped).
  std::string push(int32_t id);
  // Whatever is still held back (an incomplete character at the end of the output).
  std::string flush();

 private:
  std::string decode(size_t begin, size_t end) const;

  const TextCodec& codec_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  size_t prefix_ = 0;  // window start
  size_t read_ = 0;    // ids before read_ have been emitted
};

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);
  // Appends text; returns the part that is now safe to emit. Sets stopped() when a stop string
  // completed in this text (the text is cut just before it and nothing after it is emitted).
  // With check == false (min_tokens not reached) nothing is matched, but the possible start of
  // a stop string is still held back: checked text may complete it (vLLM's semantics).
  std::string append(const std::string& text, bool check = true);
  // Releases the held-back text (at the end of generation).
  std::string flush();
  bool stopped() const { return stopped_; }
  // The stop string that completed (the earliest in the text; of two starting there, the first
  // given); empty until stopped().
  const std::string& matched() const { return matched_; }
  const std::string& text() const { return text_; }  // all text so far (cut at a stop)

 private:
  std::vector<std::string> stops_;
  std::string text_;
  size_t emitted_ = 0;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace nc

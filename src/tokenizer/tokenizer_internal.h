// Helpers shared by the Tokenizer's translation units (tokenizer.cc, tokenizer_bpe.cc); not part
// of the tokenizer's interface.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace nc::tok_detail {

inline constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// Key of a merge: the ids of its two parts.
inline uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// A merge line "left right" as its two parts.
inline std::pair<std::string, std::string> split_merge(const std::string& m) {
  // The two parts never hold a raw space (byte-level maps it to U+0120); search from 1 so a
  // part made of a lone space in a hand-written file still splits sensibly.
  const size_t sp = m.find(' ', 1);
  NC_CHECK_AS(ErrorKind::InvalidArgument, sp != std::string::npos,
              "tokenizer merge '{}' is not two tokens separated by a space", m);
  return {m.substr(0, sp), m.substr(sp + 1)};
}

inline int32_t find_token(const TokenizerSpec& spec, const std::string& text) {
  for (size_t i = 0; i < spec.tokens.size(); ++i)
    if (spec.tokens[i] == text) return static_cast<int32_t>(i);
  return -1;
}

}  // namespace nc::tok_detail

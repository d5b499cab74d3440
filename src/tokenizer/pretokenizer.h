// Pre-tokenization: a sequence of regex splits (PCRE2, UTF mode, Unicode properties), each
// splitting every piece the previous one produced, with Hugging Face's Split semantics:
// the text is cut into matches and the gaps between them (an empty match is a cut point and
// nothing else), `invert` swaps which ranges count as matches, and `behavior` says what
// becomes of the matches:
//   Isolated            every match and every gap is its own piece;
//   Removed             matches are dropped, gaps are pieces;
//   MergedWithPrevious  a match is appended to the gap before it;
//   MergedWithNext      a match is prepended to the gap after it;
//   Contiguous          consecutive matches form one piece, gaps are pieces.
// Empty pieces are never returned.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nc {

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreSplit {
  std::string pattern;  // PCRE2 syntax (the Oniguruma regexes of tokenizer.json files are valid)
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
};

// "Isolated", "Removed", ... as tokenizer.json writes them; nc::Error naming an unknown one.
SplitBehavior split_behavior_from_name(const std::string& name);

class PreTokenizer {
 public:
  // Throws nc::Error naming the pattern when one does not compile.
  explicit PreTokenizer(const std::vector<PreSplit>& steps);
  ~PreTokenizer();
  // Pieces of text, in order. Views into text; without Removed steps they concatenate to text.
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Regex;
  std::vector<std::unique_ptr<Regex>> regexes_;
};

}  // namespace nc

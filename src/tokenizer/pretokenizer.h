// Byte-level BPE pre-tokenization: a sequence of PCRE2 regexes (UTF mode, Unicode properties),
// each splitting the pieces the previous one produced. Both the matches and the text between
// them become pieces, as Hugging Face's Split(behavior="Isolated") does.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nc {

class PreTokenizer {
 public:
  // Throws nc::Error naming the pattern when one does not compile.
  explicit PreTokenizer(const std::vector<std::string>& patterns);
  ~PreTokenizer();
  // Pieces of text, in order; they concatenate to text. Views into text.
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Regex;
  std::vector<std::unique_ptr<Regex>> regexes_;
};

}  // namespace nc

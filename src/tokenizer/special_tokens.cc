// Tokenizer's special tokens: the table of their texts, finding them in a text (when asked, or
// only at spans a chat template marked), and encoding a text around the ones found. The BPE of
// the text between them is in tokenizer.cc.
#include <algorithm>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace nc {

namespace {

bool is_special_type(TokenType t) {
  return t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown;
}

}  // namespace

void Tokenizer::build_specials() {
  for (size_t i = 0; i < spec_.tokens.size(); ++i) {
    const std::string& t = spec_.tokens[i];
    if (t.empty() || !is_special_type(spec_.types[i])) continue;
    if (!specials_.emplace(t, static_cast<int32_t>(i)).second) continue;
    special_first_byte_[static_cast<uint8_t>(t[0])] = true;
    has_always_ = has_always_ || is_always_special(static_cast<int32_t>(i));
    if (std::find(special_lengths_.begin(), special_lengths_.end(), t.size()) ==
        special_lengths_.end())
      special_lengths_.push_back(t.size());
  }
  std::sort(special_lengths_.rbegin(), special_lengths_.rend());
}

// Hugging Face and llama.cpp match user-defined (non-special added) tokens in all text. Text
// from users must not become markers (issue #19), so here only those made of whitespace are
// (GPT-NeoX/MPT's runs of spaces): they are plain text by any reading, and without them such
// vocabularies would not tokenize as their models were trained.
bool Tokenizer::is_always_special(int32_t id) const {
  if (spec_.types[id] != TokenType::kUserDefined) return false;
  const std::string& t = spec_.tokens[id];
  return !t.empty() && t.find_first_not_of(" \t\n\r") == std::string::npos;
}

bool Tokenizer::is_special_text(std::string_view text) const {
  return specials_.find(text) != specials_.end();
}

// Leftmost-longest matches of special token texts (only the always-matched ones when asked).
std::vector<Tokenizer::SpecialHit> Tokenizer::find_all_specials(std::string_view text,
                                                                bool always_only) const {
  std::vector<SpecialHit> hits;
  if (always_only && !has_always_) return hits;
  for (size_t i = 0; i < text.size();) {
    size_t hit_len = 0;
    if (special_first_byte_[static_cast<uint8_t>(text[i])]) {
      for (size_t len : special_lengths_) {
        if (i + len > text.size()) continue;
        auto it = specials_.find(text.substr(i, len));
        if (it != specials_.end() && (!always_only || is_always_special(it->second))) {
          hits.push_back({i, len, it->second});
          hit_len = len;
          break;
        }
      }
    }
    i += hit_len > 0 ? hit_len : 1;
  }
  return hits;
}

// Whitespace-only user-defined tokens are found in all text; other special tokens only where
// asked for (see is_always_special).
std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  return encode_with_hits(text, find_all_specials(text, !parse_special), add_bos);
}

std::vector<int32_t> Tokenizer::encode_marked(std::string_view text,
                                              const std::vector<TextSpan>& marked,
                                              bool add_bos) const {
  std::vector<SpecialHit> hits;
  size_t end_of_last = 0;
  // The hits in text[from, from + len): all specials inside a marked span (a Jinja template's
  // span may hold several), the always-matched ones elsewhere.
  auto add_hits = [&](size_t from, size_t len, bool user_defined_only) {
    for (SpecialHit h : find_all_specials(text.substr(from, len), user_defined_only)) {
      h.offset += from;
      hits.push_back(h);
    }
  };
  for (const TextSpan& s : marked) {
    NC_CHECK(
        s.offset >= end_of_last && s.offset <= text.size() && s.length <= text.size() - s.offset,
        "encode_marked: span [{}, {}) is out of order or outside the text of {} bytes", s.offset,
        s.offset + s.length, text.size());
    add_hits(end_of_last, s.offset - end_of_last, true);
    add_hits(s.offset, s.length, false);
    end_of_last = s.offset + s.length;
  }
  add_hits(end_of_last, text.size() - end_of_last, true);
  return encode_with_hits(text, hits, add_bos);
}

// Encodes text with each hit as its token and the text between hits as ordinary text.
std::vector<int32_t> Tokenizer::encode_with_hits(std::string_view text,
                                                 const std::vector<SpecialHit>& hits,
                                                 bool add_bos) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos) {
    NC_CHECK(spec_.bos_id >= 0, "cannot add BOS: the {} tokenizer has no BOS token", spec_.name);
    out.push_back(spec_.bos_id);
  }
  size_t seg_start = 0;
  bool first = true;
  for (const SpecialHit& h : hits) {
    encode_segment(text.substr(seg_start, h.offset - seg_start), first, out);
    out.push_back(h.id);
    first = false;
    seg_start = h.offset + h.length;
  }
  encode_segment(text.substr(seg_start), first, out);
  return out;
}

}  // namespace nc

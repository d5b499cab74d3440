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
    if (std::find(special_lengths_.begin(), special_lengths_.end(), t.size()) ==
        special_lengths_.end())
      special_lengths_.push_back(t.size());
  }
  std::sort(special_lengths_.rbegin(), special_lengths_.rend());
}

bool Tokenizer::is_special_text(std::string_view text) const {
  return specials_.find(text) != specials_.end();
}

// Leftmost-longest matches of special token texts.
std::vector<Tokenizer::SpecialHit> Tokenizer::find_all_specials(std::string_view text) const {
  std::vector<SpecialHit> hits;
  for (size_t i = 0; i < text.size();) {
    size_t hit_len = 0;
    if (special_first_byte_[static_cast<uint8_t>(text[i])]) {
      for (size_t len : special_lengths_) {
        if (i + len > text.size()) continue;
        auto it = specials_.find(text.substr(i, len));
        if (it != specials_.end()) {
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

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  if (!parse_special || specials_.empty()) return encode_with_hits(text, {}, add_bos);
  return encode_with_hits(text, find_all_specials(text), add_bos);
}

std::vector<int32_t> Tokenizer::encode_marked(std::string_view text,
                                              const std::vector<TextSpan>& marked,
                                              bool add_bos) const {
  std::vector<SpecialHit> hits;
  size_t end_of_last = 0;
  for (const TextSpan& s : marked) {
    NC_CHECK(
        s.offset >= end_of_last && s.offset <= text.size() && s.length <= text.size() - s.offset,
        "encode_marked: span [{}, {}) is out of order or outside the text of {} bytes", s.offset,
        s.offset + s.length, text.size());
    end_of_last = s.offset + s.length;
    // The special tokens wholly inside the span (a Jinja template's span may hold several).
    for (SpecialHit h : find_all_specials(text.substr(s.offset, s.length))) {
      h.offset += s.offset;
      hits.push_back(h);
    }
  }
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

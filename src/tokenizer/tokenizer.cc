#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

namespace nc {

namespace {

using tok_detail::kSpmSpace;
using tok_detail::pair_key;

// Parses "<0xNN>"; -1 when s has another form.
int parse_byte_token(std::string_view s) {
  if (s.size() != 6 || s.substr(0, 3) != "<0x" || s[5] != '>') return -1;
  int v = 0;
  for (char c : s.substr(3, 2)) {
    v *= 16;
    if (c >= '0' && c <= '9')
      v += c - '0';
    else if (c >= 'A' && c <= 'F')
      v += c - 'A' + 10;
    else if (c >= 'a' && c <= 'f')
      v += c - 'a' + 10;
    else
      return -1;
  }
  return v;
}

}  // namespace

Tokenizer::Tokenizer(TokenizerSpec spec) : spec_(std::move(spec)) {
  const size_t n = spec_.tokens.size();
  NC_CHECK_AS(ErrorKind::InvalidArgument, n > 0, "tokenizer has an empty vocabulary");
  NC_CHECK_AS(ErrorKind::InvalidArgument, n < (1u << 31),
              "tokenizer vocabulary too large: {} tokens", n);
  if (spec_.types.empty()) spec_.types.assign(n, TokenType::kNormal);
  NC_CHECK_AS(ErrorKind::InvalidArgument, spec_.types.size() == n,
              "tokenizer has {} token types for {} tokens", spec_.types.size(), n);
  if (spec_.scores.empty()) spec_.scores.assign(n, 0.0f);
  NC_CHECK_AS(ErrorKind::InvalidArgument, spec_.scores.size() == n,
              "tokenizer has {} scores for {} tokens", spec_.scores.size(), n);
  for (int32_t* id : {&spec_.bos_id, &spec_.eos_id, &spec_.unk_id}) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, *id < static_cast<int64_t>(n),
                "special token id {} is out of range (vocabulary of {})", *id, n);
    if (*id < 0) *id = -1;
  }
  for (int32_t id : spec_.extra_eos_ids)
    NC_CHECK_AS(ErrorKind::InvalidArgument, id >= 0 && id < static_cast<int64_t>(n),
                "end-of-turn token id {} is out of range (vocabulary of {})", id, n);
  if (spec_.bos_id < 0) spec_.add_bos = false;  // nothing to add

  token_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (!spec_.tokens[i].empty()) token_to_id_.emplace(spec_.tokens[i], static_cast<int32_t>(i));
  }
  std::fill(std::begin(byte_token_), std::end(byte_token_), -1);
  if (spec_.kind == TokenizerKind::kByteLevelBpe) {
    for (int b = 0; b < 256; ++b) byte_token_[b] = token_id(unicode::byte_to_utf8(b));
  } else {
    for (size_t i = 0; i < n; ++i) {
      const int b = spec_.types[i] == TokenType::kByte ? parse_byte_token(spec_.tokens[i]) : -1;
      if (b >= 0 && byte_token_[b] < 0) byte_token_[b] = static_cast<int32_t>(i);
    }
  }
  if (spec_.kind != TokenizerKind::kSentencePieceBpe) {
    merges_.reserve(spec_.merges.size());
    for (size_t r = 0; r < spec_.merges.size(); ++r) {
      const auto& [a, b] = spec_.merges[r];
      const int32_t ia = token_id(a), ib = token_id(b), iab = token_id(a + b);
      // A merge whose parts or result are not tokens can never apply; skip it as HF does.
      if (ia < 0 || ib < 0 || iab < 0) continue;
      merges_.emplace(pair_key(ia, ib), MergeInfo{static_cast<int32_t>(r), iab});
    }
    pre_ = std::make_unique<PreTokenizer>(spec_.pre_splits);
  }
  build_pieces();
  build_specials();
  build_eos_ids();
}

Tokenizer::~Tokenizer() = default;

void Tokenizer::build_pieces() {
  pieces_.resize(spec_.tokens.size());
  for (size_t i = 0; i < spec_.tokens.size(); ++i) {
    const std::string& t = spec_.tokens[i];
    std::string& p = pieces_[i];
    const TokenType type = spec_.types[i];
    if (type != TokenType::kNormal && type != TokenType::kByte && type != TokenType::kUndefined) {
      p = t;  // control, user-defined, unknown, unused: their text
    } else if (spec_.kind == TokenizerKind::kByteLevelBpe) {
      for (size_t k = 0; k < t.size();) {
        const size_t start = k;
        const int b = unicode::cp_to_byte(unicode::utf8_next(t, k));
        if (b >= 0)
          p += static_cast<char>(b);
        else
          p.append(t, start, k - start);  // not from the byte map: keep as text
      }
    } else if (type == TokenType::kByte && parse_byte_token(t) >= 0) {
      p = std::string(1, static_cast<char>(parse_byte_token(t)));
    } else {
      for (size_t k = 0; k < t.size();) {
        if (std::string_view(t).substr(k, 3) == kSpmSpace) {
          p += ' ';
          k += 3;
        } else {
          p += t[k++];
        }
      }
    }
  }
}

void Tokenizer::build_eos_ids() {
  auto add = [&](int32_t id) {
    if (id >= 0 && std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end())
      eos_ids_.push_back(id);
  };
  add(spec_.eos_id);
  for (int32_t id : spec_.extra_eos_ids) add(id);
  // End-of-turn markers: a chat model stops at them when its template closes turns with them.
  for (const char* name :
       {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"}) {
    const int32_t id = token_id(name);
    if (id >= 0 && spec_.chat_template.find(name) != std::string::npos) add(id);
  }
}

int32_t Tokenizer::token_id(std::string_view token_text) const {
  auto it = token_to_id_.find(token_text);
  return it == token_to_id_.end() ? -1 : it->second;
}

void Tokenizer::check_id(int32_t id) const {
  NC_CHECK_AS(ErrorKind::InvalidArgument, id >= 0 && id < vocab_size(),
              "token id {} is out of range (vocabulary of {} tokens)", id, vocab_size());
}

TokenType Tokenizer::token_type(int32_t id) const {
  check_id(id);
  return spec_.types[id];
}

const std::string& Tokenizer::token_piece(int32_t id) const {
  check_id(id);
  return pieces_[id];
}

bool Tokenizer::is_eos(int32_t id) const {
  return std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end();
}

void Tokenizer::encode_segment(std::string_view text, bool first_segment,
                               std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string normalized;  // NFC per segment, as Hugging Face normalizes around added tokens
  if (spec_.nfc) {
    normalized = unicode::utf8_nfc(text);
    text = normalized;
  }
  if (spec_.kind == TokenizerKind::kSentencePieceBpe) {
    spm_segment(text, spec_.add_prefix_space, out);
    return;
  }
  if (spec_.kind == TokenizerKind::kUtf8Bpe) {
    std::string norm;  // spaces as U+2581, as SentencePiece writes them
    norm.reserve(text.size() + 8);
    if (spec_.add_prefix_space && (first_segment || !spec_.prefix_first_only)) norm += kSpmSpace;
    for (char c : text) {
      if (c == ' ' && spec_.escape_spaces)
        norm += kSpmSpace;
      else
        norm += c;
    }
    for (std::string_view word : pre_->split(norm)) utf8_bpe_word(word, out);
    return;
  }
  if (spec_.add_prefix_space && text[0] != ' ') {
    std::string spaced(1, ' ');
    spaced.append(text);
    for (std::string_view word : pre_->split(spaced)) bpe_word(word, out);
    return;
  }
  for (std::string_view word : pre_->split(text)) bpe_word(word, out);
}

void Tokenizer::append_piece(int32_t id, bool skip_special, bool& at_start,
                             std::string& out) const {
  check_id(id);
  const TokenType type = spec_.types[id];
  if (type == TokenType::kControl || type == TokenType::kUnknown) {
    if (!skip_special) out += pieces_[id];
    return;
  }
  const std::string& p = pieces_[id];
  // SentencePiece added a space in front of the text; the first text token gives it back.
  if (at_start && spec_.kind != TokenizerKind::kByteLevelBpe && spec_.add_prefix_space &&
      !p.empty() && p[0] == ' ') {
    out.append(p, 1);
  } else {
    out += p;
  }
  at_start = false;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  bool at_start = true;
  for (int32_t id : ids) append_piece(id, skip_special, at_start, out);
  return out;
}

size_t utf8_complete_prefix(std::string_view s) {
  // Find the lead byte of the last sequence (at most 3 continuation bytes back).
  size_t k = s.size();
  int cont = 0;
  while (k > 0 && cont < 4 && (static_cast<uint8_t>(s[k - 1]) & 0xC0) == 0x80) {
    --k;
    ++cont;
  }
  if (k == 0) return s.size();
  const auto lead = static_cast<uint8_t>(s[k - 1]);
  if (lead < 0xC2 || lead > 0xF4) return s.size();  // ASCII or not a valid lead byte
  const int need = unicode::utf8_len(lead);
  return cont + 1 < need ? k - 1 : s.size();
}

std::string IncrementalDecoder::feed(int32_t id) {
  std::string piece;
  tok_.append_piece(id, skip_special_, at_start_, piece);  // throws before any state changes
  std::string s = pending_ + piece;
  const size_t n = utf8_complete_prefix(s);
  pending_ = s.substr(n);
  s.resize(n);
  return s;
}

std::string IncrementalDecoder::flush() {
  std::string s = std::move(pending_);
  pending_.clear();
  return s;
}

void IncrementalDecoder::reset() {
  pending_.clear();
  at_start_ = true;
}

}  // namespace nc

// The BPE algorithms of the Tokenizer: byte-level and UTF-8 BPE by merge ranks, SentencePiece
// BPE by scores, and the byte fallback of symbols outside the vocabulary.
#include <queue>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

namespace nc {

using tok_detail::kSpmSpace;
using tok_detail::pair_key;

// Byte-level BPE of one pre-token: one symbol per byte, then the ranked merges.
void Tokenizer::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (spec_.ignore_merges) {
    std::string mapped;
    for (char c : word) mapped += unicode::byte_to_utf8(static_cast<uint8_t>(c));
    const int32_t id = token_id(mapped);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  // Some vocabularies lack the bytes that valid UTF-8 never holds (0xC0, 0xC1, 0xF5..0xFF):
  // such a byte becomes the unknown token when the vocabulary has a real one, else it is
  // dropped (no text the tokenizer's authors could have seen contains it).
  const bool real_unk = spec_.unk_id >= 0 && spec_.types[spec_.unk_id] == TokenType::kUnknown;
  std::vector<int32_t> syms;
  syms.reserve(word.size());
  for (char c : word) {
    int32_t id = byte_token_[static_cast<uint8_t>(c)];
    if (id < 0 && real_unk) id = spec_.unk_id;
    if (id >= 0) syms.push_back(id);
  }
  bpe_merge(std::move(syms), out);
}

// UTF-8 BPE of one pre-token: one symbol per character (a character outside the vocabulary
// becomes its <0xNN> byte tokens, as byte_fallback does), then the ranked merges.
void Tokenizer::utf8_bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  const bool whole = spec_.ignore_merges ||
                     (spec_.whole_newlines && word.find_first_not_of('\n') == std::string::npos);
  if (whole) {
    const int32_t id = token_id(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  std::vector<int32_t> syms;
  syms.reserve(word.size());
  for (size_t i = 0; i < word.size();) {
    const size_t start = i;
    unicode::utf8_next(word, i);
    spm_emit_symbol(word.substr(start, i - start), syms);
  }
  bpe_merge(std::move(syms), out);
}

// Repeatedly applies the lowest-ranked merge among adjacent symbols (leftmost first on ties),
// via a heap whose stale entries are skipped when popped.
void Tokenizer::bpe_merge(std::vector<int32_t> ids, std::vector<int32_t>& out) const {
  struct Sym {
    int32_t id, prev, next;
  };
  std::vector<Sym> syms;
  syms.reserve(ids.size());
  for (int32_t id : ids) {
    const int32_t i = static_cast<int32_t>(syms.size());
    syms.push_back({id, i - 1, i + 1});
  }
  if (syms.empty()) return;
  syms.back().next = -1;
  const int32_t n = static_cast<int32_t>(syms.size());
  struct Cand {
    int32_t rank, left, right, left_id, right_id;
  };
  auto later = [](const Cand& a, const Cand& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
  };
  std::priority_queue<Cand, std::vector<Cand>, decltype(later)> heap(later);
  auto push_pair = [&](int32_t l) {
    if (l < 0) return;
    const int32_t r = syms[l].next;
    if (r < 0) return;
    auto it = merges_.find(pair_key(syms[l].id, syms[r].id));
    if (it != merges_.end()) heap.push({it->second.rank, l, r, syms[l].id, syms[r].id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& l = syms[c.left];
    if (l.id != c.left_id || l.next != c.right || syms[c.right].id != c.right_id) continue;
    Sym& r = syms[c.right];
    l.id = merges_.at(pair_key(c.left_id, c.right_id)).merged;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    r.id = -1;
    push_pair(l.prev);
    push_pair(c.left);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

// SentencePiece BPE of one text segment: spaces become U+2581 (plus a leading one), symbols
// start as UTF-8 characters, and the adjacent pair whose concatenation is the highest-scored
// normal token is merged first (leftmost on ties). Symbols left outside the vocabulary fall back
// to <0xNN> byte tokens.
void Tokenizer::spm_segment(std::string_view text, bool add_prefix,
                            std::vector<int32_t>& out) const {
  std::string norm;
  norm.reserve(text.size() + 8);
  if (add_prefix) norm += kSpmSpace;
  for (char c : text) {
    if (c == ' ')
      norm += kSpmSpace;
    else
      norm += c;
  }
  struct Sym {
    int32_t start, len, prev, next;
  };
  std::vector<Sym> syms;
  for (size_t i = 0; i < norm.size();) {
    const size_t start = i;
    unicode::utf8_next(norm, i);  // one character, or one byte of invalid UTF-8
    const int32_t idx = static_cast<int32_t>(syms.size());
    syms.push_back(
        {static_cast<int32_t>(start), static_cast<int32_t>(i - start), idx - 1, idx + 1});
  }
  syms.back().next = -1;
  struct Cand {
    float score;
    int32_t left, right, len;
  };
  auto later = [](const Cand& a, const Cand& b) {
    return a.score != b.score ? a.score < b.score : a.left > b.left;
  };
  std::priority_queue<Cand, std::vector<Cand>, decltype(later)> heap(later);
  const std::string_view nv = norm;
  auto push_pair = [&](int32_t l) {
    if (l < 0 || syms[l].next < 0) return;
    const Sym& a = syms[l];
    const Sym& b = syms[a.next];
    const int32_t id = token_id(nv.substr(a.start, a.len + b.len));
    if (id < 0) return;
    const TokenType t = spec_.types[id];
    if (t != TokenType::kNormal && t != TokenType::kUndefined) return;
    heap.push({spec_.scores[id], l, a.next, a.len + b.len});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) push_pair(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& l = syms[c.left];
    Sym& r = syms[c.right];
    if (l.len == 0 || r.len == 0 || l.next != c.right || l.len + r.len != c.len) continue;
    l.len += r.len;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    r.len = 0;
    push_pair(l.prev);
    push_pair(c.left);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next)
    spm_emit_symbol(nv.substr(syms[i].start, syms[i].len), out);
}

void Tokenizer::spm_emit_symbol(std::string_view sym, std::vector<int32_t>& out) const {
  const int32_t id = token_id(sym);
  if (id >= 0 &&
      (spec_.types[id] == TokenType::kNormal || spec_.types[id] == TokenType::kUndefined)) {
    out.push_back(id);
    return;
  }
  for (char c : sym) {
    const int32_t b = byte_token_[static_cast<uint8_t>(c)];
    if (b >= 0) {
      out.push_back(b);
    } else {
      NC_CHECK_AS(ErrorKind::InvalidArgument, spec_.unk_id >= 0,
                  "the {} vocabulary can encode neither '{}' nor its bytes", spec_.name, sym);
      out.push_back(spec_.unk_id);
      return;
    }
  }
}

}  // namespace nc

// Tokenizers: byte-level BPE (GPT-2, Llama-3, Qwen2/3, StarCoder/SmolLM2 and every other
// tokenizer.ggml.pre that llama.cpp knows, see pre_types.h), SentencePiece BPE by scores
// (Llama-2, Gemma 1-3, Phi-3) and SentencePiece-style BPE by merge ranks (Gemma 4, and
// tokenizer.json files with byte_fallback), built from GGUF metadata or a Hugging Face
// tokenizer.json.
//
// Encoding: special tokens are split out first (when asked, or only at the spans a chat
// template marked as its own markers: text from users is never read as control tokens), each
// remaining text segment is pre-tokenized (byte-level: the family's split chain through PCRE2;
// SentencePiece: spaces become U+2581 and a leading one may be added), and each piece is merged
// by BPE.
// Decoding returns raw bytes, which may end inside a UTF-8 character; IncrementalDecoder holds
// such bytes back when streaming.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/pretokenizer.h"

namespace nc {

class GgufFile;
class PreTokenizer;

// GGUF's token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

enum class TokenizerKind {
  kByteLevelBpe,      // merges over GPT-2's byte-to-unicode symbols
  kSentencePieceBpe,  // SentencePiece BPE: the highest-scored token is merged first
  // Merges over raw UTF-8 characters, spaces written U+2581, characters outside the
  // vocabulary as <0xNN> byte tokens (Gemma 4; tokenizer.json BPE with byte_fallback).
  kUtf8Bpe,
};

// A byte range [offset, offset + length) of a text.
struct TextSpan {
  size_t offset = 0;
  size_t length = 0;
};

// Everything a Tokenizer is built from; the GGUF and tokenizer.json loaders fill it, tests may
// build one by hand.
struct TokenizerSpec {
  TokenizerKind kind = TokenizerKind::kByteLevelBpe;
  // Byte-level and UTF-8 BPE: splits applied in sequence, each splitting the pieces of the
  // previous one (pretokenizer.h).
  std::vector<PreSplit> pre_splits;
  // Byte-level: prepend a space to the text unless it starts with one (HF ByteLevel
  // add_prefix_space). SentencePiece and UTF-8 BPE: prepend U+2581 to each text segment.
  bool add_prefix_space = false;
  // A pre-token that is itself in the vocabulary is emitted whole (Llama-3).
  bool ignore_merges = false;
  // UTF-8 BPE: a pre-token made only of newlines that is a token is emitted whole (Gemma 4).
  bool whole_newlines = false;
  // UTF-8 BPE: spaces are written U+2581 before pre-tokenization (SentencePiece's spaces).
  bool escape_spaces = true;
  // The U+2581 of add_prefix_space goes only in front of the text's first segment (before
  // any special token), as Metaspace's prepend_scheme "first" does.
  bool prefix_first_only = false;
  // Each text segment (between special tokens) is put in Unicode NFC first: tokenizer.json's NFC
  // normalizer (Qwen2's), as Hugging Face applies it. GGUF files do not say so (llama.cpp
  // normalizes nothing), so it is off for them.
  bool nfc = false;
  std::vector<std::string> tokens;  // byte-level: in GPT-2's byte->unicode form
  std::vector<TokenType> types;     // empty: all normal
  std::vector<float> scores;        // SentencePiece: merge priority of each token
  std::vector<std::pair<std::string, std::string>> merges;  // BPE by merges: by rank
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  bool add_bos = false;
  // End-of-turn ids named by the model files (GGUF's eot/eom, generation_config.json's
  // eos_token_id list).
  std::vector<int32_t> extra_eos_ids;
  std::string chat_template;
  std::string chat_template_tool_use;  // the named "tool_use" template, for requests with tools
  std::string name;  // family, for messages ("gpt-2", "llama-bpe", "llama-spm", ...)
};

class Tokenizer {
 public:
  explicit Tokenizer(TokenizerSpec spec);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // From tokenizer.ggml.* keys: tokenizer.ggml.model gpt2 (byte-level BPE), llama
  // (SentencePiece) or gemma4 (UTF-8 BPE); others are an nc::Error naming the model.
  // tokenizer.ggml.pre names the pre-tokenizer (pre_types.h); an unknown one is an nc::Error
  // listing the known ones (a wrong regex would silently mis-tokenize).
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& gguf);
  // From a directory holding tokenizer.json (and optionally tokenizer_config.json), or the
  // path of a tokenizer.json (tokenizer_config.json is then looked for beside it).
  // Supports model.type BPE, byte-level (ByteLevel pre-tokenizer) or with byte_fallback
  // (SentencePiece-style), with Sequence / Split / ByteLevel / Digits / Punctuation /
  // Whitespace / WhitespaceSplit / Metaspace pre-tokenizers and NFC / Replace / Prepend
  // normalizers; anything else is an nc::Error naming it.
  static std::unique_ptr<Tokenizer> from_hf_json(const std::string& path);
  // Maps a tokenizer.ggml.pre name to its split patterns; nc::Error when unknown.
  static std::vector<std::string> pre_regexes_for(const std::string& pre_name);

  // parse_special: a special token's text anywhere in text becomes that token (Hugging Face's
  // default); otherwise all of text is ordinary text, except that user-defined tokens made only
  // of whitespace (GPT-NeoX's space runs, which HF and llama.cpp always match) are matched.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;
  // Only the marked spans (byte ranges of text, sorted, not overlapping) may hold special
  // tokens: the special tokens wholly inside a span (leftmost-longest, as parse_special finds
  // them) are those tokens; outside the spans only whitespace-only user-defined tokens are. The
  // text between two special tokens is encoded as one segment, so that when the specials found are
  // those that encode(text, ..., true) would find, the ids are the same. nc::Error for spans out of
  // order or out of range.
  std::vector<int32_t> encode_marked(std::string_view text, const std::vector<TextSpan>& marked,
                                     bool add_bos) const;
  // Whether text is the text of a special (control, user-defined or unknown) token.
  bool is_special_text(std::string_view text) const;
  // Raw bytes of the tokens. Control tokens render as their text unless skip_special.
  // SentencePiece: the space of the dummy prefix is dropped from the first non-control token.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
  // Raw bytes of one token (control and user-defined tokens: their text).
  const std::string& token_piece(int32_t id) const;
  // The token as stored in the vocabulary (byte-level: the mapped form). -1 when absent.
  int32_t token_id(std::string_view token_text) const;
  TokenType token_type(int32_t id) const;

  int32_t bos_id() const { return spec_.bos_id; }
  int32_t eos_id() const { return spec_.eos_id; }
  // eos plus the end-of-turn tokens (<|eot_id|>, <|im_end|>, ...) the vocabulary has and the
  // chat template uses, or that the model file names.
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  bool is_eos(int32_t id) const;
  bool add_bos_default() const { return spec_.add_bos; }
  int vocab_size() const { return static_cast<int>(spec_.tokens.size()); }
  TokenizerKind kind() const { return spec_.kind; }
  const std::string& name() const { return spec_.name; }
  const std::string& chat_template() const { return spec_.chat_template; }
  // The template for a request with tools: the model's "tool_use" one, else the default.
  const std::string& chat_template(bool with_tools) const {
    return with_tools && !spec_.chat_template_tool_use.empty() ? spec_.chat_template_tool_use
                                                               : spec_.chat_template;
  }

 private:
  friend class IncrementalDecoder;
  struct MergeInfo {
    int32_t rank;
    int32_t merged;
  };
  struct StrHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using StrMap = std::unordered_map<std::string, int32_t, StrHash, std::equal_to<>>;

  void check_id(int32_t id) const;
  void build_pieces();
  void build_specials();
  void build_eos_ids();
  // A special token found in a text: its byte range and id.
  struct SpecialHit {
    size_t offset, length;
    int32_t id;
  };
  std::vector<SpecialHit> find_all_specials(std::string_view text, bool always_only) const;
  bool is_always_special(int32_t id) const;
  std::vector<int32_t> encode_with_hits(std::string_view text, const std::vector<SpecialHit>& hits,
                                        bool add_bos) const;
  void encode_segment(std::string_view text, bool first_segment, std::vector<int32_t>& out) const;
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  void utf8_bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  // Applies the ranked merges to a word's initial symbols (ids) and appends the result.
  void bpe_merge(std::vector<int32_t> syms, std::vector<int32_t>& out) const;
  void spm_segment(std::string_view text, bool add_prefix, std::vector<int32_t>& out) const;
  void spm_emit_symbol(std::string_view sym, std::vector<int32_t>& out) const;
  // Appends the bytes of one token to out; at_start tracks the SentencePiece leading space.
  void append_piece(int32_t id, bool skip_special, bool& at_start, std::string& out) const;

  TokenizerSpec spec_;
  StrMap token_to_id_;
  std::unordered_map<uint64_t, MergeInfo> merges_;  // (left id << 32 | right id) -> merge
  int32_t byte_token_[256];          // byte-level: token of each byte; SentencePiece: <0xNN>
  std::vector<std::string> pieces_;  // decoded bytes of each token
  std::unique_ptr<PreTokenizer> pre_;
  StrMap specials_;                      // special token text -> id
  std::vector<size_t> special_lengths_;  // distinct lengths, longest first
  bool special_first_byte_[256] = {};
  bool has_always_ = false;  // some is_always_special token exists
  std::vector<int32_t> eos_ids_;
};

// Streaming detokenizer: feed ids one at a time, get the text completed so far. It never
// returns part of a UTF-8 character: incomplete trailing bytes wait for the next token, and
// flush() returns whatever is left at the end. The concatenation of everything returned equals
// Tokenizer::decode of all the ids fed.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tok, bool skip_special = false)
      : tok_(tok), skip_special_(skip_special) {}
  std::string feed(int32_t id);
  std::string flush();
  void reset();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  bool at_start_ = true;
  std::string pending_;  // bytes of an incomplete UTF-8 character (at most 3)
};

// Length of the longest prefix of s that does not end inside an incomplete (but so far valid)
// UTF-8 sequence. Invalid bytes count as complete.
size_t utf8_complete_prefix(std::string_view s);

}  // namespace nc

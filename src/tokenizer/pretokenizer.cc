#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace nc {

struct PreTokenizer::Regex {
  std::string pattern;
  pcre2_code* code = nullptr;
  ~Regex() {
    if (code) pcre2_code_free(code);
  }
  // Appends the pieces of text (matches and gaps) to out.
  void split(std::string_view text, pcre2_match_data* md, std::vector<std::string_view>& out) const;
};

PreTokenizer::PreTokenizer(const std::vector<std::string>& patterns) {
  for (const std::string& p : patterns) {
    auto re = std::make_unique<Regex>();
    re->pattern = p;
    int err = 0;
    PCRE2_SIZE err_off = 0;
    // UCP: \s, \d, \w and case folding follow Unicode, as in the Oniguruma regexes of HF.
    // MATCH_INVALID_UTF: invalid UTF-8 in the input never matches instead of failing.
    re->code =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
                      PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
    if (!re->code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      fail_as(ErrorKind::InvalidArgument,
              "pre-tokenizer regex does not compile at offset {}: {} (pattern: {})", err_off,
              reinterpret_cast<const char*>(msg), p);
    }
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if absent
    regexes_.push_back(std::move(re));
  }
}

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::Regex::split(std::string_view text, pcre2_match_data* md,
                                std::vector<std::string_view>& out) const {
  size_t pos = 0;  // where the next gap or match starts
  size_t search = 0;
  while (search < text.size()) {
    const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), search,
                               0, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    NC_CHECK(rc >= 0, "pre-tokenizer regex failed with PCRE2 error {} (pattern: {})", rc, pattern);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e == b) {  // an empty match: step over one character, which stays in the gap
      if (b >= text.size()) break;
      search = b + unicode::utf8_len(static_cast<unsigned char>(text[b]));
      continue;
    }
    if (b > pos) out.push_back(text.substr(pos, b - pos));
    out.push_back(text.substr(b, e - b));
    pos = search = e;
  }
  if (pos < text.size()) out.push_back(text.substr(pos));
}

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string_view> pieces{text};
  if (text.empty()) return {};
  for (const auto& re : regexes_) {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(re->code, nullptr);
    NC_CHECK(md != nullptr, "out of memory for PCRE2 match data");
    std::vector<std::string_view> next;
    next.reserve(pieces.size() * 2);
    try {
      for (std::string_view p : pieces) re->split(p, md, next);
    } catch (...) {
      pcre2_match_data_free(md);
      throw;
    }
    pcre2_match_data_free(md);
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace nc

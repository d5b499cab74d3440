#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace nc {

namespace {

struct Range {
  size_t begin, end;
  bool match;
};

// Hugging Face's rules for turning matches and gaps into pieces (normalizer.rs `split`).
void apply_behavior(std::string_view text, const std::vector<Range>& ranges, SplitBehavior b,
                    std::vector<std::string_view>& out) {
  std::vector<Range> pieces;  // match = "drop this piece"
  bool prev_match = false;
  switch (b) {
    case SplitBehavior::kIsolated:
      for (const Range& r : ranges) pieces.push_back({r.begin, r.end, false});
      break;
    case SplitBehavior::kRemoved:
      pieces = ranges;
      break;
    case SplitBehavior::kContiguous:
      for (const Range& r : ranges) {
        if (r.match == prev_match && !pieces.empty())
          pieces.back().end = r.end;
        else
          pieces.push_back({r.begin, r.end, false});
        prev_match = r.match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Range& r : ranges) {
        if (r.match && !prev_match && !pieces.empty())
          pieces.back().end = r.end;
        else
          pieces.push_back({r.begin, r.end, false});
        prev_match = r.match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t i = ranges.size(); i-- > 0;) {
        const Range& r = ranges[i];
        if (r.match && !prev_match && !pieces.empty())
          pieces.back().begin = r.begin;
        else
          pieces.push_back({r.begin, r.end, false});
        prev_match = r.match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
  }
  for (const Range& p : pieces)
    if (!p.match && p.end > p.begin) out.push_back(text.substr(p.begin, p.end - p.begin));
}

}  // namespace

SplitBehavior split_behavior_from_name(const std::string& name) {
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  fail_as(ErrorKind::Unsupported, "unknown Split behavior '{}' in a pre-tokenizer", name);
}

struct PreTokenizer::Regex {
  PreSplit step;
  pcre2_code* code = nullptr;
  ~Regex() {
    if (code) pcre2_code_free(code);
  }
  // Appends the pieces of text to out.
  void split(std::string_view text, pcre2_match_data* md, std::vector<std::string_view>& out) const;
};

PreTokenizer::PreTokenizer(const std::vector<PreSplit>& steps) {
  for (const PreSplit& s : steps) {
    auto re = std::make_unique<Regex>();
    re->step = s;
    const std::string& p = s.pattern;
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
  std::vector<Range> ranges;
  size_t prev = 0;    // where the next gap starts
  size_t search = 0;  // where the next match is looked for
  while (search < text.size()) {
    const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), search,
                               0, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    NC_CHECK(rc >= 0, "pre-tokenizer regex failed with PCRE2 error {} (pattern: {})", rc,
             step.pattern);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (b > prev) ranges.push_back({prev, b, false});
    if (e == b) {  // an empty match only cuts; the search moves on by one character
      prev = b;
      if (b >= text.size()) break;
      search = b + unicode::utf8_len(static_cast<unsigned char>(text[b]));
      continue;
    }
    ranges.push_back({b, e, true});
    prev = search = e;
  }
  if (prev < text.size()) ranges.push_back({prev, text.size(), false});
  if (step.invert)
    for (Range& r : ranges) r.match = !r.match;
  apply_behavior(text, ranges, step.behavior, out);
}

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  if (text.empty()) return {};
  std::vector<std::string_view> pieces{text};
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

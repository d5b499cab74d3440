#include "engine/detokenizer.h"

#include <algorithm>

namespace nc {

size_t utf8_complete_length(const std::string& s) {
  // Walk back over at most 3 continuation bytes to the last lead byte.
  size_t n = s.size();
  size_t i = n;
  int cont = 0;
  while (i > 0 && cont < 4) {
    const uint8_t c = uint8_t(s[i - 1]);
    if ((c & 0xC0) != 0x80) break;
    --i;
    ++cont;
  }
  if (i == 0) return n;  // only continuation bytes: nothing to wait for
  const uint8_t lead = uint8_t(s[i - 1]);
  int need = 0;
  if ((lead & 0x80) == 0)
    need = 0;
  else if ((lead & 0xE0) == 0xC0)
    need = 1;
  else if ((lead & 0xF0) == 0xE0)
    need = 2;
  else if ((lead & 0xF8) == 0xF0)
    need = 3;
  else
    return n;  // invalid lead byte: emit as is
  return cont < need ? i - 1 : n;
}

IncrementalDetokenizer::IncrementalDetokenizer(const TextCodec& codec,
                                               const std::vector<int32_t>& prompt,
                                               bool skip_special_tokens)
    : codec_(codec), skip_special_(skip_special_tokens) {
  // A few prompt tokens give the first output token its context (e.g. a leading space).
  const size_t ctx = std::min<size_t>(prompt.size(), 5);
  ids_.assign(prompt.end() - ctx, prompt.end());
  prefix_ = 0;
  read_ = ids_.size();
}

std::string IncrementalDetokenizer::decode(size_t begin, size_t end) const {
  return codec_.decode(ids_.data() + begin, end - begin, skip_special_);
}

std::string IncrementalDetokenizer::push(int32_t id) {
  ids_.push_back(id);
  const std::string before = decode(prefix_, read_);
  const std::string now = decode(prefix_, ids_.size());
  const size_t complete = utf8_complete_length(now);
  // Wait while the newest bytes are an incomplete character, or decode replaced them with
  // U+FFFD (some decoders do), or nothing new appeared.
  const bool replacement = now.size() >= 3 && now.compare(now.size() - 3, 3, "\xEF\xBF\xBD") == 0;
  if (complete < now.size() || replacement || now.size() <= before.size() ||
      now.compare(0, before.size(), before) != 0) {
    return {};
  }
  std::string delta = now.substr(before.size());
  // The prompt ended inside a character: the bytes that finish it are no character of the
  // output (vLLM drops them too), and a delta never starts with half of one.
  if (utf8_complete_length(before) < before.size()) {
    size_t k = 0;
    while (k < delta.size() && (uint8_t(delta[k]) & 0xC0) == 0x80) ++k;
    delta.erase(0, k);
  }
  prefix_ = read_;
  read_ = ids_.size();
  return delta;
}

std::string IncrementalDetokenizer::flush() {
  if (read_ == ids_.size()) return {};
  const std::string before = decode(prefix_, read_);
  const std::string now = decode(prefix_, ids_.size());
  read_ = prefix_ = ids_.size();
  if (now.size() <= before.size() || now.compare(0, before.size(), before) != 0) return {};
  return now.substr(before.size());
}

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

std::string StopStringMatcher::append(const std::string& text, bool check) {
  if (stopped_) return {};
  const size_t old = text_.size();
  text_ += text;
  if (stops_.empty()) {
    std::string out = text_.substr(emitted_);
    emitted_ = text_.size();
    return out;
  }
  // A match counts only when it ends in the new text (vLLM's window): a stop string inside text
  // that was not checked (before min_tokens) does not stop, one completed by checked text does.
  // It starts after emitted_: the possible start of a stop string is always held back.
  size_t cut = std::string::npos;
  for (size_t i = 0; check && i < stops_.size(); ++i) {
    const std::string& s = stops_[i];
    const size_t from = std::max(emitted_, old + 1 >= s.size() ? old + 1 - s.size() : 0);
    const size_t at = text_.find(s, from);
    if (at < cut) {
      cut = at;
      matched_ = s;
    }
  }
  if (cut != std::string::npos) {
    stopped_ = true;
    text_.resize(cut);
    std::string out = cut > emitted_ ? text_.substr(emitted_) : std::string();
    emitted_ = text_.size();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t k = std::min(s.size() - 1, text_.size()); k > hold; --k) {
      if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  size_t upto = std::max(emitted_, text_.size() - hold);
  // Never split a UTF-8 character when holding back.
  upto = std::max(emitted_, utf8_complete_length(text_.substr(0, upto)));
  std::string out = text_.substr(emitted_, upto - emitted_);
  emitted_ = upto;
  return out;
}

std::string StopStringMatcher::flush() {
  std::string out = text_.substr(emitted_);
  emitted_ = text_.size();
  return out;
}

}  // namespace nc

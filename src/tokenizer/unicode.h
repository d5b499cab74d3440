// Small UTF-8 helpers and GPT-2's byte <-> unicode mapping used by byte-level BPE.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace nc::unicode {

// Byte length of the UTF-8 sequence starting with lead byte c (1 for invalid lead bytes).
int utf8_len(unsigned char c);
// Decodes the code point at s[i], advancing i; invalid bytes decode to themselves (one byte,
// value 0xDC00 + byte, a lone surrogate no valid text contains) so nothing is lost.
uint32_t utf8_next(std::string_view s, size_t& i);
void utf8_append(uint32_t cp, std::string& out);
// The text in Unicode Normalization Form C (utf8proc's tables); text that is not valid UTF-8 is
// returned as it is (the tokenizer then reads its bytes as they are).
std::string utf8_nfc(std::string_view text);

// GPT-2: every byte maps to a printable code point (bytes 33..126, 161..172, 174..255 to
// themselves, the others to 256 + n in order).
uint32_t byte_to_cp(uint8_t b);
// Inverse; -1 for code points that no byte maps to.
int cp_to_byte(uint32_t cp);
// The UTF-8 string of byte_to_cp(b).
const std::string& byte_to_utf8(uint8_t b);

}  // namespace nc::unicode

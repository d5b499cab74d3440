// libFuzzer target: parse arbitrary bytes as GGUF, then read every metadata value through the
// typed getters and dequantize every tensor listed. Any nc::Error is an expected outcome; a
// crash, sanitizer report, leak or other exception is a bug.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "formats/gguf.h"

namespace {

void touch_metadata(const nc::GgufFile& f) {
  for (const auto& [key, value] : f.metadata()) {
    // Each getter either returns or throws nc::Error for a value of another type.
    try {
      (void)f.get_int(key);
    } catch (const nc::Error&) {
    }
    try {
      (void)f.get_float(key);
    } catch (const nc::Error&) {
    }
    try {
      (void)f.get_string(key);
    } catch (const nc::Error&) {
    }
    try {
      (void)f.get_string_array(key);
    } catch (const nc::Error&) {
    }
    try {
      (void)f.get_int_array(key);
    } catch (const nc::Error&) {
    }
    try {
      (void)f.get_float_array(key);
    } catch (const nc::Error&) {
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    nc::GgufFile f = nc::GgufFile::parse(data, size);
    touch_metadata(f);
    for (const auto& t : f.tensors()) {
      nc::HostTensor h = f.load_f32(t);
      (void)h;
    }
  } catch (const nc::Error&) {
  }
  return 0;
}

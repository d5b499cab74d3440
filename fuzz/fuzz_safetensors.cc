// libFuzzer target: parse arbitrary bytes as a safetensors file, then convert every tensor to
// float32 (non-float dtypes must throw). Any nc::Error is an expected outcome; a crash,
// sanitizer report, leak or other exception is a bug.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const nc::SafetensorsFile f = nc::SafetensorsFile::parse(data, size);
    for (const auto& t : f.tensors()) {
      if (f.find(t.name) != &t) __builtin_trap();  // names must index their own entries
      try {
        const nc::HostTensor h = f.load_f32(t);
        if (int64_t(h.data.size()) != h.numel()) __builtin_trap();
      } catch (const nc::Error&) {
      }
    }
  } catch (const nc::Error&) {
  }
  return 0;
}

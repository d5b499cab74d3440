// libFuzzer target for the model-config readers. The first byte picks the input kind: even,
// the rest is a config.json for config_from_hf_json; odd, a GGUF file for config_from_gguf
// (which also reads rope_freqs.weight). Then the expected weights of any accepted config are
// listed. Any nc::Error is an expected outcome; anything else is a bug.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf.h"
#include "model/model_config.h"
#include "model/model_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool gguf = data[0] & 1;
  ++data;
  --size;
  try {
    nc::ModelConfig c;
    if (gguf) {
      c = nc::config_from_gguf(nc::GgufFile::parse(data, size));
    } else {
      const auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) return 0;
      c = nc::config_from_hf_json(j);
    }
    // Keep the listing small: a valid config may claim billions of layers.
    if (c.num_layers <= 64) (void)nc::expected_weights(c);
  } catch (const nc::Error&) {
  }
  return 0;
}

// KVPageShift: one page of cached keys moved to other positions (the streaming window,
// docs/long_context.md, "Streaming window (StreamingLLM)").
//
// Keys are stored rotated by their position (rope). When a request drops the pages between its
// attention sinks and its recent window, the kept pages after the sinks move down by the number
// of tokens dropped, and their keys must be rotated to the new positions: slot s of `page` holds
// the key of position from + s and is to hold it at position to + s. Values carry no position
// and stay. Backend::shift_key_positions applies a list of them to one layer's pages; the model
// applies a step's list (ForwardInput::kv_shifts) to every layer before the step's pass.
#pragma once
#include <cstdint>

namespace nc {

struct KVPageShift {
  int32_t page = 0;  // page id in the layer's page tensor
  int32_t from = 0;  // position of the page's slot 0 now (>= 0)
  int32_t to = 0;    // position of the page's slot 0 after the shift (>= 0)
};

// Row layout of the i32 [P, 3] tensor the backend takes: (page, from, to).
inline constexpr int kKVPageShiftFields = 3;

}  // namespace nc

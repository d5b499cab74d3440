// LlamaModel's part of the streaming window (model/llama.h: check_kv_shifts, shift_keys): a
// step's cached keys moved to their new positions in every layer, each layer rotated with its
// kind's inverse frequencies (Gemma 3's sliding layers have a rope of their own).
#include <vector>

#include "core/error.h"
#include "model/llama.h"

namespace nc {

void LlamaModel::check_kv_shifts(KVCache& kv) {
  check_rope_position_shift(cfg_);
  NC_CHECK_AS(ErrorKind::Unsupported, !kv.shape.fp8,
              "streaming window: fp8 KV pages are not supported (every shift of a key would "
              "round it to e4m3 again)");
  NC_CHECK(!kv.layers.empty(), "streaming window: no KV cache allocated");
  // A backend without the op throws Unsupported here, at start-up, not at the first eviction.
  const Tensor none = backend_.alloc({0, kKVPageShiftFields}, DType::I32);
  backend_.shift_key_positions(kv.layers[0], kv.shape, none,
                               kinds_.kinds[size_t(kinds_.of_layer[0])].inv_freq);
}

void LlamaModel::shift_keys(const std::vector<KVPageShift>& shifts, KVCache& kv) {
  if (shifts.empty()) return;
  std::vector<int32_t> rows;
  rows.reserve(shifts.size() * kKVPageShiftFields);
  for (const KVPageShift& s : shifts) {
    NC_CHECK(s.page >= 0 && s.page < kv.shape.num_pages,
             "forward: kv shift of page {} outside [0, {})", s.page, kv.shape.num_pages);
    NC_CHECK(s.from >= 0 && s.from < cfg_.max_position && s.to >= 0 && s.to < cfg_.max_position,
             "forward: kv shift of page {} from position {} to {} outside [0, {})", s.page, s.from,
             s.to, cfg_.max_position);
    rows.insert(rows.end(), {s.page, s.from, s.to});
  }
  Tensor t = backend_.alloc({int64_t(shifts.size()), kKVPageShiftFields}, DType::I32);
  backend_.copy_from_host(t, rows.data());
  for (size_t l = 0; l < kv.layers.size(); ++l) {
    const LayerKind& kind = kinds_.kinds[size_t(kinds_.of_layer[l])];
    backend_.shift_key_positions(kv.layers[l], kv.shape, t, kind.inv_freq);
  }
}

}  // namespace nc

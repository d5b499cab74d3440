// Which form computes MLA's attention values (Backend::mla_attention_values) for an entry of a
// step, on every backend: the absorbed form (the queries taken into latent space through W_UK^T,
// attention over the cached latent rows, the output taken out through W_UV, per row) or the
// expanded one (the entry's keys [W_UK c_kv | k_pe] and values W_UV c_kv decompressed once, then
// ordinary attention at head sizes Dn + Dr and Dv). cpu_mla.h and cuda_mla_expanded.h say how each
// backend runs them.
//
// The cost rule counts multiply-adds per head. Absorbed: each (row, key) pair at Dl + Dr (score)
// and Dl (value), each row through both projections (Dl (Dn + Dv)). Expanded: each key through
// both projections, each pair at Dn + Dr and Dv, plus a fixed cost per entry. The backend's
// MlaFormCosts weigh the projections against its attention kernels and say the fixed cost, as
// measured. So decode rows stay absorbed and long prefill chunks (and whole prompts past the
// fixed cost) go expanded.
#pragma once
#include <cstdint>

#include "kv/paged_kv.h"

namespace nc {

enum class MlaForm { Auto, Absorbed, Expanded };

// Process-wide; NC_MLA_FORM=auto|absorbed|expanded sets the first value (tests and benchmarks
// force a form; nc::Error names a bad value).
void set_mla_form(MlaForm form);
MlaForm mla_form();

// H heads; D = Dl + Dr the cached row; Dn, Dr, Dv the nope, rope and value head dims.
struct MlaDims {
  int64_t H, D, Dl, Dr, Dn, Dv;
};

struct MlaFormCosts {
  int64_t projection = 1;  // one projection multiply-add, in attention multiply-adds
  int64_t fixed = 0;       // the expanded form's own cost an entry, multiply-adds over all heads
};

// Whether entry `b` of `batch` costs less expanded (MlaForm::Auto's rule).
bool mla_expanded_pays(const PagedKVBatch& batch, int b, int page_size, const MlaDims& d,
                       const MlaFormCosts& costs);
// The same for `rows` query rows against `keys` keys (causal: the last row sees every key, the
// rows before it one fewer each).
bool mla_expanded_pays(int64_t rows, int64_t keys, bool causal, const MlaDims& d,
                       const MlaFormCosts& costs);

}  // namespace nc

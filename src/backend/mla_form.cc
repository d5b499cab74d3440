// MLA's form setting and cost rule (contract: mla_form.h).
#include "backend/mla_form.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace nc {
namespace {

MlaForm form_from_env() {
  const char* f = std::getenv("NC_MLA_FORM");
  if (f == nullptr || *f == '\0' || std::strcmp(f, "auto") == 0) return MlaForm::Auto;
  if (std::strcmp(f, "absorbed") == 0) return MlaForm::Absorbed;
  NC_CHECK(std::strcmp(f, "expanded") == 0,
           "NC_MLA_FORM: '{}' is not one of auto, absorbed, expanded", f);
  return MlaForm::Expanded;
}

std::atomic<MlaForm>& form_setting() {
  static std::atomic<MlaForm> form{form_from_env()};
  return form;
}

// The (row, key) pairs: row i of a causal entry sees keys - rows + i + 1 keys.
int64_t entry_pairs(int64_t rows, int64_t keys, bool causal) {
  if (!causal) return rows * keys;
  return rows * (keys - rows) + rows * (rows + 1) / 2;
}

}  // namespace

void set_mla_form(MlaForm form) {
  form_setting().store(form);
}

MlaForm mla_form() {
  return form_setting().load();
}

bool mla_expanded_pays(const PagedKVBatch& batch, int b, int page_size, const MlaDims& d,
                       const MlaFormCosts& costs) {
  return mla_expanded_pays(batch.q_len(b), batch.kv_len(b, page_size), batch.causal, d, costs);
}

bool mla_expanded_pays(int64_t rows, int64_t keys, bool causal, const MlaDims& d,
                       const MlaFormCosts& costs) {
  const int64_t pairs = entry_pairs(rows, keys, causal);
  const int64_t decompress = costs.projection * d.Dl * (d.Dn + d.Dv);
  const int64_t absorbed = pairs * (d.D + d.Dl) + rows * decompress;
  const int64_t expanded = keys * decompress + pairs * (d.Dn + d.Dr + d.Dv);
  return d.H * expanded + costs.fixed < d.H * absorbed;
}

}  // namespace nc

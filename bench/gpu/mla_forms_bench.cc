// nc_gpu_bench mla-forms: MLA's two forms on the CUDA backend (mla_form.h; cuda_mla_expanded.h)
// through Backend::mla_attention_values (append, attention, both projections), at DeepSeek's head
// shape (latent 512 + rope 64, nope 128, value 128, page 16, bf16) with V2-Lite's 16 heads and
// V3's 128:
//   - whole prompts of 512, 2048 and 8192 tokens (no cache),
//   - prefill chunks of 64, 256, 1024 and 4096 rows after 4096 cached tokens,
//   - 64 decode rows over 4096 tokens each,
// each with the form forced absorbed, forced expanded and left to the rule (Auto): time per call,
// the TFLOP/s of the attention's own multiply-adds in each form (pairs x (Dl + Dr + Dl) absorbed,
// pairs x (Dn + Dr + Dv) expanded, plus the projections: rows x 2 Dl (Dn + Dv) absorbed,
// keys x 2 Dl (Dn + Dv) expanded; per head, 2 FLOPs a multiply-add) against the bf16 GEMM rate
// measured in the same run, the faster form and Auto's regret (its time / the faster's).
// Host wall-clock over back-to-back calls after a warm-up, median of 5 runs (bench_util.h).
// With OUT set, also $OUT/mla_forms.csv.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/mla_form.h"
#include "bench_util.h"

namespace nc {
namespace {

constexpr int kDl = 512, kDr = 64, kD = kDl + kDr, kDn = 128, kDv = 128, kPs = 16;

AttentionShape forms_shape(int heads, int num_pages) {
  AttentionShape s{heads, 1, kD, 1.0f / std::sqrt(192.0f), KVCacheShape{1, num_pages, kPs, 1, kD}};
  s.kv.latent = true;
  s.latent_dim = kDl;
  s.mla_nope_dim = kDn;
  s.mla_v_dim = kDv;
  return s;
}

struct Case {
  const char* what;
  int entries, rows, cached;  // per entry
};

// `c` over shuffled pages: each entry's cached tokens, then its rows.
AttentionStep case_step(const Case& c, int num_pages, std::mt19937& rng) {
  std::vector<int32_t> perm(static_cast<size_t>(num_pages));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  AttentionStep step{c.entries * c.rows, {}};
  step.levels.emplace_back();
  const int len = c.cached + c.rows, np = (len + kPs - 1) / kPs;
  for (int e = 0; e < c.entries; ++e) {
    const std::vector<int32_t> mine(perm.begin() + int64_t(e) * np,
                                    perm.begin() + int64_t(e + 1) * np);
    step.levels[0].add(c.rows, mine, len, kPs);
  }
  return step;
}

// Seconds per mla_attention_values call under `form` (< 0: failed).
double time_form(Backend& be, MlaForm form, const AttentionStep& step, const AttentionShape& s,
                 Tensor pages) {
  set_mla_form(form);
  try {
    const int64_t T = step.num_tokens, H = s.num_qo_heads;
    Tensor q = be.alloc({T, H * (kDn + kDr)}, DType::BF16), qm = be.alloc({T, H * kD}, DType::BF16),
           lat = be.alloc({T, kD}, DType::BF16), ol = be.alloc({T, H * kDl}, DType::BF16),
           at = be.alloc({T, H * kDv}, DType::BF16), wk = be.alloc({H, kDl, kDn}, DType::BF16),
           wv = be.alloc({H, kDv, kDl}, DType::BF16);
    for (Tensor* t : {&q, &qm, &lat, &wk, &wv}) be.fill_uniform(*t, 21, -0.1f, 0.1f);
    auto plan = be.plan_attention(step, s);
    return bench::auto_seconds_per_call(
        be, [&] { be.mla_attention_values(*plan, q, qm, lat, pages, wk, wv, ol, at); }, 20e-3);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mla-forms: %d rows: %s\n", step.num_tokens, e.what());
    return -1;
  }
}

// FLOPs of each form for the step (all heads).
void form_flops(const AttentionStep& step, int H, double* absorbed, double* expanded) {
  const PagedKVBatch& b = step.levels[0];
  double pairs = 0, rows = 0, keys = 0;
  for (int e = 0; e < b.batch_size(); ++e) {
    const double r = b.q_len(e), k = b.kv_len(e, kPs);
    pairs += r * (k - r) + r * (r + 1) / 2, rows += r, keys += k;
  }
  const double proj = 2.0 * kDl * (kDn + kDv);
  *absorbed = 2.0 * H * (pairs * (kD + kDl) + rows * proj);
  *expanded = 2.0 * H * (pairs * (kDn + kDr + kDv) + keys * proj);
}

std::string cell(double t, double flops) {
  if (t < 0) return "error";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f (%.0f)", t * 1e6, flops / t / 1e12);
  return buf;
}

}  // namespace

void bench_mla_forms() {
  auto be = make_cuda_backend(0);
  std::mt19937 rng(17);
  const double peak = bench::gemm_peak_tflops(*be);
  const int num_pages = 64 * 4160 / kPs + 1024;  // the decode case, the largest
  Tensor pages = be->alloc({num_pages, kPs, 1, kD}, DType::BF16);
  be->fill_uniform(pages, 13, -1.0f, 1.0f);
  const MlaForm saved = mla_form();
  std::FILE* csv = bench::open_csv(
      "mla_forms.csv", "heads,case,entries,rows,cached,absorbed_us,expanded_us,auto_us,peak");
  std::printf(
      "\n## MLA forms (latent %d + rope %d, nope %d, value %d, page %d, bf16): us per "
      "mla_attention_values (TFLOP/s of the form's own multiply-adds); bf16 GEMM (cuBLASLt "
      "8192^3) %.0f TFLOP/s\n| heads | case | absorbed | expanded | Auto | faster | Auto's regret "
      "|\n|---|---|---|---|---|---|---|\n",
      kDl, kDr, kDn, kDv, kPs, peak);
  const Case cases[] = {{"prompt 512", 1, 512, 0},
                        {"prompt 2048", 1, 2048, 0},
                        {"prompt 8192", 1, 8192, 0},
                        {"chunk 64 after 4096", 1, 64, 4096},
                        {"chunk 256 after 4096", 1, 256, 4096},
                        {"chunk 1024 after 4096", 1, 1024, 4096},
                        {"chunk 4096 after 4096", 1, 4096, 4096},
                        {"64 decodes over 4096", 64, 1, 4095}};
  for (int H : {16, 128}) {
    const AttentionShape s = forms_shape(H, num_pages);
    for (const Case& c : cases) {
      const AttentionStep step = case_step(c, num_pages, rng);
      double fa = 0, fe = 0;
      form_flops(step, H, &fa, &fe);
      const double ta = time_form(*be, MlaForm::Absorbed, step, s, pages);
      const double te = time_form(*be, MlaForm::Expanded, step, s, pages);
      const double tu = time_form(*be, MlaForm::Auto, step, s, pages);
      const bool exp_faster = te > 0 && (ta < 0 || te < ta);
      const double best = exp_faster ? te : ta;
      std::printf("| %d | %s | %s | %s | %.1f | %s | %.2f |\n", H, c.what, cell(ta, fa).c_str(),
                  cell(te, fe).c_str(), tu * 1e6, exp_faster ? "expanded" : "absorbed",
                  best > 0 && tu > 0 ? tu / best : 0.0);
      std::fflush(stdout);
      if (csv)
        std::fprintf(csv, "%d,%s,%d,%d,%d,%.2f,%.2f,%.2f,%.1f\n", H, c.what, c.entries, c.rows,
                     c.cached, ta * 1e6, te * 1e6, tu * 1e6, peak);
    }
  }
  if (csv) std::fclose(csv);
  set_mla_form(saved);
}

}  // namespace nc

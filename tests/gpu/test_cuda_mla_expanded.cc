// MLA's expanded form on CUDA (cuda_mla_expanded.h) against the CPU reference (cpu_mla.h),
// through Backend::mla_attention_values at DeepSeek-V2-Lite's head shape (16 heads; latent 512,
// rope 64, nope 128, value 128), page sizes 1 and 16, over
//   - a whole prompt (1200 rows, no cache): Auto takes it expanded,
//   - a mixed step: an 800-row chunk after 1000 cached tokens (expanded under Auto) between decodes
//     over 300 and 1500 tokens (absorbed under Auto), so that both forms and their row gathers
//     and scatters run in one step,
//   - a cascade step: a chunk (expanded under Auto, over the shared prefix's keys and its own)
//     and a decode under a shared level, and a decode without one (the absorbed part keeps both
//     levels, restricted to its rows),
// with the form forced each way (NC_MLA_FORM's setting, mla_form.h) and left to the rule. Each run
// checks which rows the plan took expanded (mla_expanded_rows), the output against the CPU's
// (kBf16Tol: the GPU rounds q, the decompressed K/V and the softmax weights to bf16) and the
// appended rows (exact). Pages are drawn at random ids, so a wrong slot reads other values.
#include <cstdio>

#include "backend/cuda/cuda_mla_expanded.h"
#include "backend/mla_form.h"
#include "gpu_test_util.h"

namespace nc::testing {
namespace {

constexpr int kH = 16, kDl = 512, kDr = 64, kD = kDl + kDr, kDn = 128, kDv = 128;

struct FormScope {
  explicit FormScope(MlaForm f) : saved(mla_form()) { set_mla_form(f); }
  ~FormScope() { set_mla_form(saved); }
  MlaForm saved;
};

class CudaMlaExpanded : public GpuVsCpu {
 protected:
  AttentionShape shape(int ps) const {
    AttentionShape s{kH, 1, kD, 1.0f / std::sqrt(float(kDn + kDr)),
                     KVCacheShape{1, pool_.count, ps, 1, kD}};
    s.kv.latent = true;
    s.latent_dim = kDl;
    s.mla_nope_dim = kDn;
    s.mla_v_dim = kDv;
    return s;
  }
  // The step under each form; `auto_rows`: the rows Auto should take expanded.
  void check(const AttentionStep& step, int ps, int64_t auto_rows, const char* what);

  ShuffledPages pool_;  // 4000 tokens' pages
};

void CudaMlaExpanded::check(const AttentionStep& step, int ps, int64_t auto_rows,
                            const char* what) {
  const AttentionShape sh = shape(ps);
  const int64_t T = step.num_tokens;
  auto [pc, pg] = both_random({pool_.count, ps, 1, kD});
  auto [qc, qg] = both_random({T, kH * (kDn + kDr)});
  auto [mc, mg] = both_random({T, kH * kD});  // rope parts read; latent parts rewritten
  auto [lc, lg] = both_random({T, kD});
  auto [uc, ug] = both_random({kH, kDl, kDn}, 0.08f);
  auto [vc, vg] = both_random({kH, kDv, kDl}, 0.08f);
  std::vector<float> ref;
  {
    const FormScope absorbed(MlaForm::Absorbed);
    Tensor oc = cpu->alloc({T, kH * kDl}, DType::F32), ac = cpu->alloc({T, kH * kDv}, DType::F32);
    cpu->mla_attention_values(*cpu->plan_attention(step, sh), qc, mc, lc, pc, uc, vc, oc, ac);
    ref = cpu->to_host_f32(ac);
  }
  for (const MlaForm form : {MlaForm::Absorbed, MlaForm::Expanded, MlaForm::Auto}) {
    const char* name = form == MlaForm::Absorbed   ? "absorbed"
                       : form == MlaForm::Expanded ? "expanded"
                                                   : "auto";
    SCOPED_TRACE(::testing::Message() << what << ", page size " << ps << ", " << name);
    const FormScope scope(form);
    const std::unique_ptr<AttentionPlan> plan = gpu->plan_attention(step, sh);
    const int64_t want = form == MlaForm::Absorbed ? 0 : form == MlaForm::Expanded ? T : auto_rows;
    EXPECT_EQ(cuda_host::mla_expanded_rows(*plan), want);
    if (want > 0) {  // the latent-space op has no expanded form: a clear error, nothing appended
      EXPECT_THROW(gpu->mla_attention(*plan, mg, lg, pg, outputs({T, kH * kDl}).second), Error);
    }
    Tensor mg2 = gpu->upload(HostTensor{{T, kH * kD}, gpu->to_host_f32(mg)});
    const Tensor og = outputs({T, kH * kDl}).second, ag = outputs({T, kH * kDv}).second;
    gpu->mla_attention_values(*plan, qg, mg2, lg, pg, ug, vg, og, ag);
    const std::vector<float> got = gpu->to_host_f32(ag);
    const double e = rel_error(got, ref);
    std::printf("mla values %s (%s, ps %d, %lld rows, %lld expanded): rel err %.3e\n", what, name,
                ps, static_cast<long long>(T), static_cast<long long>(want), e);
    EXPECT_LT(e, kBf16Tol) << "first values: gpu " << got[0] << " " << got[1] << ", cpu " << ref[0]
                           << " " << ref[1];
    EXPECT_LT(err(*gpu, pg, pc), 1e-6) << "appended rows";
  }
}

TEST_F(CudaMlaExpanded, FormsMatchCpu) {
  for (int ps : {1, 16}) {
    pool_.reset(4000, ps, rng);
    AttentionStep prompt{1200, {}};
    prompt.levels.emplace_back();
    prompt.levels[0].add(1200, pool_.take(1200, ps), 1200, ps);
    check(prompt, ps, 1200, "whole prompt");
    pool_.rewind();
    AttentionStep mixed{802, {}};
    mixed.levels.emplace_back();
    mixed.levels[0].add(1, pool_.take(300, ps), 300, ps);
    mixed.levels[0].add(800, pool_.take(1800, ps), 1800, ps);
    mixed.levels[0].add(1, pool_.take(1500, ps), 1500, ps);
    check(mixed, ps, 800, "mixed step");
    // Cascade: a 1000-row chunk and a decode share a 400-token prefix (a non-causal level), a
    // second decode has none; the chunk goes expanded over the prefix's keys and its own.
    pool_.rewind();
    AttentionStep casc{1002, {}};
    PagedKVBatch shared, own;
    shared.causal = false;
    shared.add(1001, pool_.take(400, ps), 400, ps);
    shared.add(1, {}, 0, ps);
    own.add(1000, pool_.take(1000, ps), 1000, ps);
    own.add(1, pool_.take(50, ps), 50, ps);
    own.add(1, pool_.take(700, ps), 700, ps);
    casc.levels = {shared, own};
    check(casc, ps, 1000, "cascade step");
  }
}

}  // namespace
}  // namespace nc::testing

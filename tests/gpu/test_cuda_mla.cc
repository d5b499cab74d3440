// MLA on the CUDA backend (cuda_mla.h, mla.cu) against the CPU reference (cpu_mla.h): the
// prologue (rope + latent norm, both rope layouts), the per-head matmul, and the attention over
// latent pages with the append, at V2-Lite's shape (16 heads, 512 + 64) and a tiny one, for a
// chunked prefill next to decodes and for a cascade step whose shared level is merged by LSE.
#include <algorithm>

#include "gpu_test_util.h"

namespace nc::testing {
namespace {

struct MlaCase {
  int H, Dl, Dr, ps;
};

class CudaMla : public GpuVsCpu {
 protected:
  void run_case(const MlaCase& c);
};

TEST_F(CudaMla, PrologueAndHeadLinearMatchCpu) {
  const int T = 7, H = 4, Dn = 16, Dr = 8, Dl = 32, D = Dl + Dr, max_pos = 64;
  const std::vector<int32_t> pos_v = {0, 1, 2, 9, 33, 62, 5};
  auto [pc, pg] = both_i32(pos_v);
  auto [qc, qg] = both_random({T, H * (Dn + Dr)});
  auto [ac, ag] = both_random({T, D});
  auto [nc_, ng] = both_random({Dl});
  const std::vector<float> table = random_vec(rng, size_t(max_pos * Dr));
  Tensor tc = cpu->alloc({max_pos, Dr}, DType::F32), tg = gpu->alloc({max_pos, Dr}, DType::F32);
  cpu->copy_from_host(tc, table.data());
  gpu->copy_from_host(tg, table.data());
  for (bool interleaved : {false, true}) {
    auto [mc, mg] = both({T, H * D}, std::vector<float>(size_t(T * H * D), 0.0f));
    auto [lc, lg] = outputs({T, D});
    cpu->mla_rope_norm(qc, ac, nc_, 1e-6f, pc, tc, interleaved, Dn, mc, lc);
    gpu->mla_rope_norm(qg, ag, ng, 1e-6f, pg, tg, interleaved, Dn, mg, lg);
    EXPECT_LT(err(*gpu, mg, mc), kBf16Tol) << "interleaved " << interleaved;
    EXPECT_LT(err(*gpu, lg, lc), kBf16Tol) << "interleaved " << interleaved;
    auto [wc, wg] = both_random({H, Dl, Dn}, 0.25f);
    cpu->head_linear(qc, wc, mc);
    gpu->head_linear(qg, wg, mg);
    EXPECT_LT(err(*gpu, mg, mc), kBf16Tol);
  }
}

// Step 1 writes a 32-token prefix (sequence a's prefill); step 2 is a cascade step: a prefill
// chunk of a and a decode of b, both reading the prefix through a shared non-causal level and
// their own tokens through the causal own level. Random q and latent rows each step.
void CudaMla::run_case(const MlaCase& c) {
  const int D = c.Dl + c.Dr, shared = 2 * 16, num_pages = 64;
  AttentionShape shape{c.H, 1, D, 1.0f / std::sqrt(192.0f), KVCacheShape{1, num_pages, c.ps, 1, D}};
  shape.kv.latent = true;
  shape.latent_dim = c.Dl;
  auto [pages_c, pages_g] =
      both({num_pages, c.ps, 1, D}, std::vector<float>(size_t(num_pages * c.ps * D), 0.0f));
  std::vector<int32_t> shared_pages, own_a, own_b;
  int next = 0;
  for (int i = 0; i < shared / c.ps; ++i) shared_pages.push_back(next++);
  // Exactly the pages step 2's own entries hold: 12 tokens of a, 1 of b.
  for (int i = 0; i < (12 + c.ps - 1) / c.ps; ++i) own_a.push_back(next++);
  own_b.push_back(next++);
  auto run = [&](const AttentionStep& step, double tol) {
    const int64_t T = step.num_tokens;
    auto [qc, qg] = both_random({T, c.H * D}, 0.5f);
    auto [lc, lg] = both_random({T, D});
    auto [oc, og] = outputs({T, c.H * c.Dl});
    cpu->mla_attention(*cpu->plan_attention(step, shape), qc, lc, pages_c, oc);
    gpu->mla_attention(*gpu->plan_attention(step, shape), qg, lg, pages_g, og);
    EXPECT_LT(err(*gpu, og, oc), tol) << "levels " << step.levels.size();
    EXPECT_LT(err(*gpu, pages_g, pages_c), 1e-6) << "appended rows";
  };
  // 1: the shared prefix as sequence 0's prefill, in one chunk.
  AttentionStep s1{shared, {}};
  s1.levels.emplace_back();
  s1.levels[0].add(shared, shared_pages, shared, c.ps);
  run(s1, kBf16Tol);
  // 2: a prefill chunk of a (12 tokens) next to a decode of b (1 token), both after the prefix:
  //    a cascade step (shared level non-causal, own level causal).
  AttentionStep s2{13, {}};
  PagedKVBatch lvl0, lvl1;
  lvl0.causal = false;
  lvl0.add(13, shared_pages, shared, c.ps);
  lvl1.add(12, own_a, 12, c.ps);
  lvl1.add(1, own_b, 1, c.ps);
  s2.levels = {lvl0, lvl1};
  run(s2, kBf16Tol);
}

TEST_F(CudaMla, AttentionMatchesCpuTinyShape) {
  for (int ps : {1, 4, 16}) run_case({4, 32, 8, ps});
}

TEST_F(CudaMla, AttentionMatchesCpuDeepseekShape) {
  run_case({16, 512, 64, 16});
}

}  // namespace
}  // namespace nc::testing

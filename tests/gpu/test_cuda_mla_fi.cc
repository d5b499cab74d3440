// FlashInfer's MLA kernels (mla_fi_host.h: FA2 and Hopper, latent 512 + rope 64) against the CPU
// reference (cpu_mla.h), through the Backend's MLA ops: DeepSeek-V2-Lite's 16 heads and V3's
// 128, page sizes 1, 16 and 64, over
//   - a mixed step (a prefill chunk after a cached context next to decodes, one causal level),
//   - a cascade decode step (a shared non-causal level, one row without a shared entry),
//   - long decodes (thousands of keys per row: MLAPlan splits the KV and the kernel merges it).
// Pages are drawn at random ids in a pool filled with random rows, so a wrong page stride or
// index reads other values. Each step runs through our fallback kernel, FlashInfer's FA2 and its
// Hopper kernel (NC_MLA_KERNEL forces one; Hopper only where the device is compute capability
// 9.0, else FA2 again); each check asserts which kernel the plan took and prints its error.
// Tolerance: kBf16Tol (1e-2 relative, the other MLA tests' bound): the GPU rounds q, the pages
// and p (the softmax weights, in the P.V product) to bf16 where the CPU keeps float32.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "backend/cuda/mla_plan.h"
#include "gpu_test_util.h"

namespace nc::testing {
namespace {

constexpr int kDl = 512, kDr = 64, kD = kDl + kDr;

bool device_sm90() {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  return major == 9 && minor == 0;
}

// Sets NC_MLA_KERNEL for the scope of one check.
struct KernelEnv {
  explicit KernelEnv(const std::string& k) { setenv("NC_MLA_KERNEL", k.c_str(), 1); }
  ~KernelEnv() { unsetenv("NC_MLA_KERNEL"); }
};

class CudaMlaFi : public GpuVsCpu {
 protected:
  AttentionShape shape(int H, int ps) const {
    // DeepSeek's scale: 1 / sqrt(qk_nope + qk_rope = 128 + 64).
    AttentionShape s{H, 1, kD, 1.0f / std::sqrt(192.0f), KVCacheShape{1, pool_.count, ps, 1, kD}};
    s.kv.latent = true;
    s.latent_dim = kDl;
    return s;
  }
  void check(const AttentionStep& step, int H, int ps, const char* what);
  void run_all(int H, int ps);

  ShuffledPages pool_;  // 9600 tokens' pages
};

// One step (fresh random q, latent rows and pool) on the CPU once and on the GPU through the
// fallback, FA2 and Hopper kernels in turn, over the same pool (the append rewrites the same rows
// with the same values): each output within kBf16Tol of the CPU's, the appended rows exact, and
// each plan on the kernel asked for.
void CudaMlaFi::check(const AttentionStep& step, int H, int ps, const char* what) {
  const AttentionShape sh = shape(H, ps);
  const int64_t T = step.num_tokens;
  auto [pc, pg] = both_random({pool_.count, ps, 1, kD});
  auto [qc, qg] = both_random({T, H * kD}, 0.5f);
  auto [lc, lg] = both_random({T, kD});
  Tensor oc = cpu->alloc({T, H * kDl}, DType::F32);
  cpu->mla_attention(*cpu->plan_attention(step, sh), qc, lc, pc, oc);
  const std::vector<float> ref = cpu->to_host_f32(oc);
  for (const std::string kernel : {"fallback", "fa2", "sm90"}) {
    SCOPED_TRACE(::testing::Message()
                 << what << ", " << H << " heads, page size " << ps << ", " << kernel);
    const KernelEnv env(kernel);
    const Tensor og = outputs({T, H * kDl}).second;  // NaN: an unwritten value fails
    std::unique_ptr<AttentionPlan> plan = gpu->plan_attention(step, sh);
    const auto* mp = dynamic_cast<const cuda_host::CudaMlaPlan*>(plan.get());
    ASSERT_NE(mp, nullptr);
    const cuda_host::MlaKernel want = kernel == "fallback" ? cuda_host::MlaKernel::Fallback
                                      : kernel == "fa2" || !device_sm90()
                                          ? cuda_host::MlaKernel::FA2
                                          : cuda_host::MlaKernel::SM90;
    EXPECT_EQ(mp->kernel, want) << "plan took " << cuda_host::mla_kernel_name(mp->kernel)
                                << ", expected " << cuda_host::mla_kernel_name(want);
    gpu->mla_attention(*plan, qg, lg, pg, og);
    const std::vector<float> got = gpu->to_host_f32(og);
    const double e = rel_error(got, ref);
    std::printf("mla %s (%s, H %d, ps %d, %lld rows, %zu levels): rel err %.3e\n", what,
                kernel.c_str(), H, ps, static_cast<long long>(T), step.levels.size(), e);
    EXPECT_LT(e, kBf16Tol) << "first values: gpu " << got[0] << " " << got[1] << " " << got[2]
                           << ", cpu " << ref[0] << " " << ref[1] << " " << ref[2];
    EXPECT_LT(err(*gpu, pg, pc), 1e-6) << "appended rows";
  }
}

void CudaMlaFi::run_all(int H, int ps) {
  pool_.reset(9600, ps, rng);
  // A prefill chunk of 40 tokens after 100 cached ones, next to decodes over 300, 1 and 1500.
  AttentionStep mixed{43, {}};
  mixed.levels.emplace_back();
  mixed.levels[0].add(40, pool_.take(140, ps), 140, ps);
  for (int ctx : {300, 1, 1500}) mixed.levels[0].add(1, pool_.take(ctx, ps), ctx, ps);
  check(mixed, H, ps, "mixed step");
  // Cascade: 5 decodes share a 700-token prefix, a sixth has none; then each one's own tokens.
  pool_.rewind();
  AttentionStep casc{6, {}};
  PagedKVBatch shared, own;
  shared.causal = false;
  shared.add(5, pool_.take(700, ps), 700, ps);
  shared.add(1, {}, 0, ps);
  for (int b = 0; b < 6; ++b) own.add(1, pool_.take(3 + 17 * b, ps), 3 + 17 * b, ps);
  casc.levels = {shared, own};
  check(casc, H, ps, "cascade decode");
  // Long decodes: 3 rows of 3000 keys (MLAPlan splits each row's KV over many CTAs).
  pool_.rewind();
  AttentionStep longd{3, {}};
  longd.levels.emplace_back();
  for (int b = 0; b < 3; ++b) longd.levels[0].add(1, pool_.take(3000, ps), 3000, ps);
  check(longd, H, ps, "long decode");
}

TEST_F(CudaMlaFi, V2LiteHeadsMatchCpu) {
  for (int ps : {1, 16, 64}) run_all(16, ps);
}

TEST_F(CudaMlaFi, V3HeadsMatchCpu) {
  for (int ps : {1, 16, 64}) run_all(128, ps);
}

// Tiny shapes keep the fallback (FlashInfer's kernels are compiled for 512 + 64 only), and
// NC_MLA_KERNEL=fallback forces it at DeepSeek's shape; a bad value is an error naming it.
TEST_F(CudaMlaFi, RuleKeepsTheFallback) {
  pool_.reset(9600, 16, rng);
  AttentionStep step{1, {}};
  step.levels.emplace_back();
  step.levels[0].add(1, {0}, 1, 16);
  AttentionShape tiny = shape(4, 16);
  tiny.head_dim = tiny.kv.head_dim = 40;
  tiny.latent_dim = 32;
  auto kernel_of = [&](const AttentionShape& sh) {
    std::unique_ptr<AttentionPlan> p = gpu->plan_attention(step, sh);
    return dynamic_cast<const cuda_host::CudaMlaPlan&>(*p).kernel;
  };
  EXPECT_EQ(kernel_of(tiny), cuda_host::MlaKernel::Fallback);
  EXPECT_NE(kernel_of(shape(16, 16)), cuda_host::MlaKernel::Fallback);
  {
    const KernelEnv env("fallback");
    EXPECT_EQ(kernel_of(shape(16, 16)), cuda_host::MlaKernel::Fallback);
  }
  const KernelEnv env("fastest");
  try {
    kernel_of(shape(16, 16));
    ADD_FAILURE() << "NC_MLA_KERNEL=fastest was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fastest"), std::string::npos) << e.what();
  }
}

// Host-only parts of the rule (no device needed): MLAPlan's work bound and the choice by shape.
TEST(CudaMlaFiHost, WorkBoundFollowsMlaPlansTiles) {
  auto prefill = [](int rows) {
    PagedKVBatch b;
    b.add(rows, {0}, rows, 1 << 20);  // one page of a huge page size: the bound ignores KV
    return b;
  };
  // 128 heads pack 128 (row, head) pairs a tile: 15360 rows + 1024 spare = 16384 works.
  EXPECT_TRUE(cuda_host::fi_level_fits(prefill(15360), 15360, 128));
  EXPECT_FALSE(cuda_host::fi_level_fits(prefill(15361), 15361, 128));
  // 16 heads: 64 pairs a tile, 4 rows.
  EXPECT_TRUE(cuda_host::fi_level_fits(prefill(4 * 15360), 4 * 15360, 16));
  EXPECT_FALSE(cuda_host::fi_level_fits(prefill(4 * 15360 + 1), 4 * 15360 + 1, 16));
  // Decodes: one tile per entry whatever the context; fewer entries than the level: refused.
  PagedKVBatch d;
  for (int b = 0; b < 256; ++b) d.add(1, {b}, 16, 16);
  EXPECT_TRUE(cuda_host::fi_level_fits(d, 256, 128));
  EXPECT_FALSE(cuda_host::fi_level_fits(d, 255, 128));
}

TEST(CudaMlaFiHost, RuleByShapeAndEnvironment) {
  AttentionShape sh{16, 1, 576, 0.1f, KVCacheShape{1, 8, 16, 1, 576}};
  sh.kv.latent = true;
  sh.latent_dim = 512;
  EXPECT_NE(cuda_host::mla_kernel(sh), cuda_host::MlaKernel::Fallback);
  {
    const KernelEnv env("fa2");
    EXPECT_EQ(cuda_host::mla_kernel(sh), cuda_host::MlaKernel::FA2);
  }
  AttentionShape other = sh;
  other.latent_dim = 256;  // FlashInfer's kernels are compiled for 512 + 64 only
  other.head_dim = other.kv.head_dim = 320;
  EXPECT_EQ(cuda_host::mla_kernel(other), cuda_host::MlaKernel::Fallback);
  const KernelEnv env("fastest");
  EXPECT_THROW(cuda_host::mla_kernel(sh), Error);
  EXPECT_EQ(cuda_host::mla_kernel(other), cuda_host::MlaKernel::Fallback);  // env unread
}

}  // namespace
}  // namespace nc::testing

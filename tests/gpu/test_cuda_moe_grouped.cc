// The MoE experts' tensor-core grouped GEMM (backend/cuda/moe_grouped.h) at real model shapes:
// Qwen3-30B-A3B (128 experts, top-8, hidden 2048, moe_intermediate 768) and DeepSeek-V2-Lite
// (64 experts, top-6, moe_intermediate 1408), tokens 1, 7, 64 and 1000, a quarter of the experts
// given no token and expert 0 given every token (a segment longer than a 128-row tile at 1000).
//   - Both paths (NC_MOE_GEMM=grouped and simt) against the CPU backend, and against each other.
//   - A token alone gives the same bits as inside the batch (grouped path).
//   - Graph replay bit for bit vs eager, also after the routing changed under the captured graph
//     (the per-expert problem sizes are written on the device at every replay).
//   - The override's errors and the SIMT fallback of an unaligned shape.
// Tolerances. The inputs are bf16-exact on both backends (random values rounded to bf16), so
// against the float32 CPU the GPU differs by its bf16 roundings of the gate/up output, of the
// activation and of the output (about 2^-9 relative each, random signs): kBf16Tol (1e-2) bounds
// the relative L2 error with room. The two GPU paths round at the same places and differ only in
// float32 summation order (~1e-6 relative), which flips a bf16 rounding of an intermediate
// rarely (each flip moves that element by 2^-8): 3e-3 between them is three times tighter.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>

#include "gpu_test_util.h"

namespace nc::testing {
namespace {

struct MoeShape {
  const char* name;
  int64_t E, k, H, I;
};

constexpr MoeShape kQwen3{"qwen3-30b-a3b", 128, 8, 2048, 768};
constexpr MoeShape kDeepSeek{"deepseek-v2-lite", 64, 6, 2048, 1408};
constexpr double kPathTol = 3e-3;  // grouped vs SIMT (the header says why)

// Uniform in [-scale, scale], bf16-exact; a hash per index (std::normal_distribution is too slow
// for the 400M weights of the Qwen3 shape).
std::vector<float> fast_random(size_t n, float scale, uint64_t seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = (i + seed) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
    z ^= z >> 29;
    v[i] = round_bf16(scale * (float(z >> 40) / float(1 << 23) - 1.0f));
  }
  return v;
}

// Routing of T tokens: slot 0 is expert 0; the others are distinct experts e with e % 4 != 3
// (those get no token); weights positive, summing to 1.
void make_routing(const MoeShape& s, int64_t T, std::vector<int32_t>& ids, std::vector<float>& w,
                  uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(0, int(s.E) - 1);
  ids.assign(size_t(T * s.k), 0);
  w.assign(size_t(T * s.k), 0.0f);
  for (int64_t t = 0; t < T; ++t) {
    int32_t* my = &ids[size_t(t * s.k)];
    float sum = 0;
    for (int64_t j = 0; j < s.k; ++j) {
      int e = 0;
      for (bool ok = j == 0; !ok;) {
        e = pick(rng);
        ok = e % 4 != 3 && std::find(my, my + j, e) == my + j;
      }
      my[j] = e;
      w[size_t(t * s.k + j)] = 0.2f + float(pick(rng)) / float(s.E);
      sum += w[size_t(t * s.k + j)];
    }
    for (int64_t j = 0; j < s.k; ++j) w[size_t(t * s.k + j)] /= sum;
  }
}

size_t count_differ(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::max(a.size(), b.size());
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += !(a[i] == b[i]);
  return n;
}

class CudaMoeGrouped : public GpuVsCpu {
 protected:
  void TearDown() override { unsetenv("NC_MOE_GEMM"); }

  void upload_weights(const MoeShape& s) {
    const std::vector<float> gu = fast_random(size_t(s.E * 2 * s.I * s.H), 0.05f, 1);
    const std::vector<float> dn = fast_random(size_t(s.E * s.H * s.I), 0.05f, 2);
    std::tie(gu_c, gu_g) = both({s.E, 2 * s.I, s.H}, gu);
    std::tie(dn_c, dn_g) = both({s.E, s.H, s.I}, dn);
  }
  // moe_experts on the GPU through `path` (NC_MOE_GEMM); out bf16 [T, H].
  std::vector<float> run_gpu(const char* path, const Tensor& x, const Tensor& ids, const Tensor& w,
                             Tensor out) {
    setenv("NC_MOE_GEMM", path, 1);
    gpu->moe_experts(x, ids, w, gu_g, dn_g, out);
    return gpu->to_host_f32(out);
  }
  void check_shape(const MoeShape& s);

  Tensor gu_c, gu_g, dn_c, dn_g;
};

void CudaMoeGrouped::check_shape(const MoeShape& s) {
  upload_weights(s);
  for (int64_t T : {1, 7, 64, 1000}) {
    SCOPED_TRACE(std::string(s.name) + " T=" + std::to_string(T));
    std::vector<int32_t> ids;
    std::vector<float> w;
    make_routing(s, T, ids, w, uint32_t(T));
    auto [xc, xg] = both({T, s.H}, fast_random(size_t(T * s.H), 1.0f, 7 + uint64_t(T)));
    auto [ic, ig] = both_i32(ids);
    Tensor wc = cpu->upload(HostTensor{{T, s.k}, w}), wg = gpu->alloc({T, s.k}, DType::F32);
    gpu->copy_from_host(wg, w.data());  // routing weights stay float32 on the device
    Tensor ic2 = ic.view({T, s.k}), ig2 = ig.view({T, s.k});
    Tensor og = gpu->alloc({T, s.H}, DType::BF16);
    const std::vector<float> grouped = run_gpu("grouped", xg, ig2, wg, og);
    const std::vector<float> simt = run_gpu("simt", xg, ig2, wg, og);
    // The CPU reference for the first rows (a row depends on its own token only).
    const int64_t R = std::min<int64_t>(T, 64);
    Tensor oc = cpu->alloc({R, s.H}, DType::F32);
    cpu->moe_experts(xc.slice(0, R), ic2.slice(0, R), wc.slice(0, R), gu_c, dn_c, oc);
    const std::vector<float> ref = cpu->to_host_f32(oc);
    const std::vector<float> g_rows(grouped.begin(), grouped.begin() + R * s.H);
    const std::vector<float> s_rows(simt.begin(), simt.begin() + R * s.H);
    const double eg = rel_error(g_rows, ref), es = rel_error(s_rows, ref);
    const double egs = rel_error(grouped, simt);
    std::printf(
        "%s T=%lld: rel error vs CPU (first %lld rows): grouped %.2e, simt %.2e; grouped "
        "vs simt %.2e\n",
        s.name, (long long)T, (long long)R, eg, es, egs);
    EXPECT_LE(eg, kBf16Tol) << "grouped vs CPU";
    EXPECT_LE(es, kBf16Tol) << "simt vs CPU";
    EXPECT_LE(egs, kPathTol) << "grouped vs simt over all " << T << " rows";
    if (T == 1) continue;
    const int64_t probe = T / 2;  // alone, the same bits as in the batch
    Tensor alone = gpu->alloc({1, s.H}, DType::BF16);
    const std::vector<float> one =
        run_gpu("grouped", xg.slice(probe, probe + 1), ig2.slice(probe, probe + 1),
                wg.slice(probe, probe + 1), alone);
    const std::vector<float> in_batch(grouped.begin() + probe * s.H,
                                      grouped.begin() + (probe + 1) * s.H);
    EXPECT_EQ(count_differ(one, in_batch), 0u)
        << "token " << probe << " alone vs in a batch of " << T << ": first values " << one[0]
        << " vs " << in_batch[0];
  }
}

TEST_F(CudaMoeGrouped, Qwen3ShapeMatchesCpuAndSimt) {
  check_shape(kQwen3);
}

TEST_F(CudaMoeGrouped, DeepSeekShapeMatchesCpuAndSimt) {
  check_shape(kDeepSeek);
}

// A captured grouped call replays bit for bit as eager, and again after new routing is copied
// into the same ids/weights buffers (the problem sizes come from the device, not the capture).
TEST_F(CudaMoeGrouped, GraphReplayMatchesEagerBitForBit) {
  const MoeShape s = kDeepSeek;
  const int64_t T = 64;
  upload_weights(s);
  setenv("NC_MOE_GEMM", "grouped", 1);
  gpu->reserve_moe(int(T), int(s.k), int(s.E), int(s.H), int(s.I));
  std::vector<int32_t> ids;
  std::vector<float> w;
  make_routing(s, T, ids, w, 11);
  Tensor x = gpu->upload({{T, s.H}, fast_random(size_t(T * s.H), 1.0f, 5)});
  Tensor idg = gpu->alloc({T, s.k}, DType::I32), wg = gpu->alloc({T, s.k}, DType::F32);
  gpu->copy_from_host(idg, ids.data());
  gpu->copy_from_host(wg, w.data());
  Tensor eager = gpu->alloc({T, s.H}, DType::BF16), graph = gpu->alloc({T, s.H}, DType::BF16);
  gpu->moe_experts(x, idg, wg, gu_g, dn_g, eager);
  gpu->begin_capture();
  gpu->moe_experts(x, idg, wg, gu_g, dn_g, graph);
  gpu->end_capture(3);
  for (uint32_t round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    if (round == 1) {  // other routing (other segment sizes) in the same buffers
      make_routing(s, T, ids, w, 12);
      gpu->copy_from_host(idg, ids.data());
      gpu->copy_from_host(wg, w.data());
      gpu->moe_experts(x, idg, wg, gu_g, dn_g, eager);
    }
    gpu->replay(3);
    const std::vector<float> e = gpu->to_host_f32(eager), g = gpu->to_host_f32(graph);
    const size_t differ = count_differ(g, e);
    EXPECT_EQ(differ, 0u) << "graph vs eager differ in " << differ << " of " << e.size()
                          << " values; first: " << g[0] << " vs " << e[0];
  }
}

TEST_F(CudaMoeGrouped, OverrideErrorsAndUnalignedFallback) {
  const int64_t E = 4, k = 2, H = 100, I = 36, T = 5;  // H % 8 != 0: no grouped GEMM
  auto [gu_c2, gu_g2] = both_random({E, 2 * I, H}, 0.1f);
  auto [dn_c2, dn_g2] = both_random({E, H, I}, 0.1f);
  auto [xc, xg] = both_random({T, H});
  const std::vector<int32_t> ids = {0, 1, 1, 2, 2, 3, 3, 0, 0, 2};
  const std::vector<float> w = {0.6f, 0.4f, 0.5f, 0.5f, 0.9f, 0.1f, 0.3f, 0.7f, 0.2f, 0.8f};
  auto [ic, ig] = both_i32(ids);
  Tensor wc = cpu->upload(HostTensor{{T, k}, w}), wg = gpu->alloc({T, k}, DType::F32);
  gpu->copy_from_host(wg, w.data());
  Tensor ic2 = ic.view({T, k}), ig2 = ig.view({T, k});
  auto [oc, og] = outputs({T, H});
  setenv("NC_MOE_GEMM", "grouped", 1);
  EXPECT_THROW(gpu->moe_experts(xg, ig2, wg, gu_g2, dn_g2, og), Error);
  setenv("NC_MOE_GEMM", "fast", 1);
  EXPECT_THROW(gpu->moe_experts(xg, ig2, wg, gu_g2, dn_g2, og), Error);
  setenv("NC_MOE_GEMM", "auto", 1);  // falls back to SIMT
  gpu->moe_experts(xg, ig2, wg, gu_g2, dn_g2, og);
  cpu->moe_experts(xc, ic2, wc, gu_c2, dn_c2, oc);
  const double e = err(*gpu, og, oc);
  std::printf("unaligned H=100 (auto: SIMT): rel error vs CPU %.2e\n", e);
  EXPECT_LE(e, kBf16Tol);
}

}  // namespace
}  // namespace nc::testing

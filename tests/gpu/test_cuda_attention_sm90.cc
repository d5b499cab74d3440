// FlashInfer's Hopper (sm90) batch prefill as the CUDA backend runs it for non-causal (cascade
// shared) levels: the kernel entry points of kernels.h against a float64 host reference on
// sampled (row, head) pairs and against the FA2 batch prefill on every row, output and base-2
// LSE, with and without KV splitting; then whole cascade steps on the backend against the CPU
// backend's plain attention. Skipped where the GPU is not compute capability 9.0.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <string>

#include "backend/cuda/attn_kernels.h"
#include "backend/cuda/kernels.h"
#include "gpu_test_util.h"

namespace nc::testing {
namespace {

// Sets NC_SM90_CHUNK_PAGES (the planner's split override) for a scope: "" = the planner decides.
class ChunkOverride {
 public:
  explicit ChunkOverride(const std::string& v) {
    if (v.empty())
      unsetenv("NC_SM90_CHUNK_PAGES");
    else
      setenv("NC_SM90_CHUNK_PAGES", v.c_str(), 1);
  }
  ~ChunkOverride() { unsetenv("NC_SM90_CHUNK_PAGES"); }
};

template <typename T>
T* dev_copy(const std::vector<T>& h) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(h.size(), 1) * sizeof(T)), cudaSuccess);
  if (!h.empty()) {
    EXPECT_EQ(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  return static_cast<T*>(p);
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}

// One non-causal level over a random page pool.
struct Level {
  int Hq = 0, Hk = 0, D = 0, ps = 0;
  KVLayout layout = KVLayout::NHD;
  int T = 0, num_pages = 0;
  PagedKVBatch batch;
  std::vector<float> q, pages;  // bf16-exact values
  KVCacheShape kv() const { return {1, num_pages, ps, Hk, D, layout}; }
};

// entries: (q_len, kv_len) pairs; pages are drawn at random from the pool.
Level make_level(std::mt19937& rng, int Hq, int Hk, int D, int ps, KVLayout layout,
                 const std::vector<std::pair<int, int>>& entries) {
  Level l;
  l.Hq = Hq, l.Hk = Hk, l.D = D, l.ps = ps, l.layout = layout;
  for (auto [q, kv] : entries) l.num_pages += (kv + ps - 1) / ps, l.T += q;
  l.num_pages += 3;
  std::vector<int32_t> perm(size_t(l.num_pages));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  size_t next = 0;
  l.batch.causal = false;
  for (auto [q, kv] : entries) {
    std::vector<int32_t> pages;
    for (int i = 0; i < (kv + ps - 1) / ps; ++i) pages.push_back(perm[next++]);
    l.batch.add(q, pages, kv, ps);
  }
  l.q = random_vec(rng, size_t(l.T) * Hq * D);
  l.pages = random_vec(rng, size_t(l.num_pages) * l.kv().elems_per_page());
  return l;
}

struct Result {
  std::vector<float> out, lse;
};

// Runs the level with the sm90 kernel (sm90 = true) or FA2's batch prefill; outputs poisoned.
Result run_level(const Level& l, bool sm90) {
  Result r;
  cudaStream_t st = nullptr;
  EXPECT_EQ(cudaStreamCreate(&st), cudaSuccess);
  const PagedKVBatch& b = l.batch;
  cuda::PlanQuery pq;
  pq.qo_indptr_h = b.qo_indptr.data();
  pq.kv_indptr_h = b.kv_indptr.data();
  pq.kv_last_page_len_h = b.kv_last_page_len.data();
  pq.total_rows = l.T;
  pq.batch_size = b.batch_size();
  pq.num_qo_heads = l.Hq;
  pq.num_kv_heads = l.Hk;
  pq.head_dim = l.D;
  pq.page_size = l.ps;
  size_t fb = 0, ib = 0;
  if (sm90)
    cuda::sm90_prefill_workspace_size(pq, &fb, &ib);
  else
    cuda::prefill_workspace_size(pq, &fb, &ib);
  cuda::PlanWorkspace ws;
  ws.float_bytes = std::max<size_t>(fb, 16);
  ws.int_bytes = std::max<size_t>(ib, 16);
  EXPECT_EQ(cudaMalloc(&ws.float_ws, ws.float_bytes), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&ws.int_ws, ws.int_bytes), cudaSuccess);
  EXPECT_EQ(cudaMallocHost(&ws.int_pinned, ws.int_bytes), cudaSuccess);
  const cuda::PlanInfo info =
      sm90 ? cuda::sm90_prefill_plan(pq, ws, st) : cuda::prefill_plan(pq, ws, st);

  uint16_t* pages = dev_copy(to_bf16(l.pages));
  uint16_t* q = dev_copy(to_bf16(l.q));
  int32_t* qo_indptr = dev_copy(b.qo_indptr);
  cuda::PagedKV kv;
  kv.pages = pages;
  kv.num_kv_heads = l.Hk;
  kv.page_size = l.ps;
  kv.head_dim = l.D;
  kv.hnd = l.layout == KVLayout::HND;
  kv.batch_size = b.batch_size();
  kv.indptr = dev_copy(b.kv_indptr);
  kv.indices = dev_copy(b.kv_indices);
  kv.last_page_len = dev_copy(b.kv_last_page_len);
  const size_t n_out = size_t(l.T) * l.Hq * l.D, n_lse = size_t(l.T) * l.Hq;
  void *o = nullptr, *lse_raw = nullptr;
  EXPECT_EQ(cudaMalloc(&o, n_out * 2), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&lse_raw, n_lse * 4), cudaSuccess);
  float* lse = static_cast<float*>(lse_raw);
  EXPECT_EQ(cudaMemset(o, 0xff, n_out * 2), cudaSuccess);    // bf16 NaN
  EXPECT_EQ(cudaMemset(lse, 0xff, n_lse * 4), cudaSuccess);  // f32 NaN
  cuda::AttnIO io;
  io.q = q;
  io.o = o;
  io.lse = lse;
  io.num_qo_heads = l.Hq;
  io.sm_scale = 1.0f / std::sqrt(float(l.D));
  if (sm90)
    cuda::sm90_prefill_run(info, ws, kv, io, st);
  else
    cuda::aot_attn_table({cuda::AttnKind::PrefillNone, l.D, false, false})
        ->prefill_run(info, ws, kv, qo_indptr, io, st);
  EXPECT_EQ(cudaStreamSynchronize(st), cudaSuccess);
  std::vector<uint16_t> ob(n_out);
  r.lse.resize(n_lse);
  EXPECT_EQ(cudaMemcpy(ob.data(), o, n_out * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(r.lse.data(), lse, n_lse * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  r.out.resize(n_out);
  for (size_t i = 0; i < n_out; ++i) r.out[i] = bf16_to_f32(ob[i]);
  for (void* p :
       {static_cast<void*>(pages), static_cast<void*>(q), static_cast<void*>(qo_indptr),
        static_cast<void*>(kv.indptr), static_cast<void*>(kv.indices),
        static_cast<void*>(kv.last_page_len), o, static_cast<void*>(lse), ws.float_ws, ws.int_ws})
    cudaFree(p);
  cudaFreeHost(ws.int_pinned);
  cudaStreamDestroy(st);
  return r;
}

// float64 reference of one (row, head): output row and base-2 LSE.
void reference(const Level& l, int row, int h, std::vector<double>* out, double* lse2) {
  const PagedKVBatch& b = l.batch;
  int e = 0;
  while (b.qo_indptr[e + 1] <= row) ++e;
  const KVCacheShape kv = l.kv();
  const int n = b.kv_len(e, l.ps), hk = h / (l.Hq / l.Hk);
  const double scale = 1.0 / std::sqrt(double(l.D));
  std::vector<double> s(static_cast<size_t>(n));
  double m = -INFINITY;
  for (int j = 0; j < n; ++j) {
    const int64_t page = b.kv_indices[b.kv_indptr[e] + j / l.ps];
    const float* k = &l.pages[page * kv.elems_per_page() + kv.offset_in_page(0, j % l.ps, hk)];
    const float* qr = &l.q[(int64_t(row) * l.Hq + h) * l.D];
    double dot = 0;
    for (int d = 0; d < l.D; ++d) dot += double(qr[d]) * k[d];
    s[j] = dot * scale;
    m = std::max(m, s[j]);
  }
  out->assign(size_t(l.D), 0.0);
  double sum = 0;
  for (int j = 0; j < n; ++j) {
    const double w = std::exp(s[j] - m);
    sum += w;
    const int64_t page = b.kv_indices[b.kv_indptr[e] + j / l.ps];
    const float* v = &l.pages[page * kv.elems_per_page() + kv.offset_in_page(1, j % l.ps, hk)];
    for (int d = 0; d < l.D; ++d) (*out)[d] += w * v[d];
  }
  for (double& x : *out) x = n > 0 ? x / sum : 0.0;
  *lse2 = n > 0 ? (m + std::log(sum)) / std::log(2.0) : -INFINITY;
}

class CudaAttentionSm90 : public GpuVsCpu {
 protected:
  void SetUp() override {
    GpuVsCpu::SetUp();
    if (!cuda::sm90_prefill_available(32, 32, 128))
      GTEST_SKIP() << "no compute capability 9.0 GPU: the sm90 prefill is not used here";
  }

  // sm90 vs FA2 on all rows, sm90 vs the float64 reference on sampled (row, head) pairs, and
  // empty entries give zero output and -inf LSE.
  void check_level(const Level& l, const std::string& label) {
    SCOPED_TRACE(label);
    const Result a = run_level(l, true), ref2 = run_level(l, false);
    const PagedKVBatch& b = l.batch;
    std::vector<float> out_a, out_b;
    double lse_diff = 0;
    for (int e = 0; e < b.batch_size(); ++e) {
      const bool empty = b.kv_len(e, l.ps) == 0;
      for (int row = b.qo_indptr[e]; row < b.qo_indptr[e + 1]; ++row) {
        for (int h = 0; h < l.Hq; ++h) {
          const size_t i = size_t(row) * l.Hq + h;
          if (empty) {
            ASSERT_TRUE(std::isinf(a.lse[i]) && a.lse[i] < 0)
                << "row " << row << " lse " << a.lse[i];
            for (int d = 0; d < l.D; ++d) ASSERT_EQ(a.out[i * l.D + d], 0.0f);
            continue;
          }
          lse_diff = std::max(lse_diff, std::fabs(double(a.lse[i]) - ref2.lse[i]));
          out_a.insert(out_a.end(), a.out.begin() + i * l.D, a.out.begin() + (i + 1) * l.D);
          out_b.insert(out_b.end(), ref2.out.begin() + i * l.D, ref2.out.begin() + (i + 1) * l.D);
        }
      }
    }
    EXPECT_LE(rel_error(out_a, out_b), kBf16Tol) << "vs FA2";
    EXPECT_LE(lse_diff, 1e-2) << "LSE vs FA2";
    std::uniform_int_distribution<int> row_d(0, l.T - 1), head_d(0, l.Hq - 1);
    std::vector<float> got, want;
    double worst_lse = 0;
    for (int s = 0; s < 48; ++s) {
      const int row = row_d(rng), h = head_d(rng);
      std::vector<double> o;
      double lse2 = 0;
      reference(l, row, h, &o, &lse2);
      const size_t i = size_t(row) * l.Hq + h;
      if (std::isinf(lse2)) continue;
      worst_lse = std::max(worst_lse, std::fabs(lse2 - a.lse[i]));
      for (int d = 0; d < l.D; ++d) got.push_back(a.out[i * l.D + d]), want.push_back(float(o[d]));
    }
    EXPECT_LE(rel_error(got, want), kBf16Tol) << "vs float64 reference";
    EXPECT_LE(worst_lse, 1e-2) << "LSE vs float64 reference";
  }
};

TEST_F(CudaAttentionSm90, RandomLevelsAgainstReferenceAndFa2) {
  std::uniform_int_distribution<int> n_entries(1, 5), rows(0, 200), prefix(16, 2048), coin(0, 3);
  int trial = 0;
  for (int ps : {16, 64})
    for (KVLayout layout : {KVLayout::NHD, KVLayout::HND})
      for (auto [Hq, Hk, D] : {std::tuple{8, 8, 128}, std::tuple{16, 4, 128}, std::tuple{8, 2, 64}})
        for (const char* chunk : {"", "0", "3"}) {
          ChunkOverride over(chunk);
          std::vector<std::pair<int, int>> entries;
          const int n = n_entries(rng);
          for (int e = 0; e < n; ++e)
            entries.push_back({e == 0 ? 1 + rows(rng) : rows(rng),
                               coin(rng) == 0 ? 0 : prefix(rng)});  // some empty entries
          const Level l = make_level(rng, Hq, Hk, D, ps, layout, entries);
          check_level(l, "trial " + std::to_string(trial++) + " page " + std::to_string(ps) +
                             (layout == KVLayout::NHD ? " NHD " : " HND ") + std::to_string(Hq) +
                             "/" + std::to_string(Hk) + "/" + std::to_string(D) + " chunk '" +
                             chunk + "' T " + std::to_string(l.T));
        }
}

TEST_F(CudaAttentionSm90, SharedPrefixShapes) {
  // The cascade shapes: one entry of many rows over one prefix, 1..512 rows, 16..4096 tokens,
  // planner's choice of split (long prefixes with few rows are split).
  // 32 query heads over 8 KV heads keeps the pools small; one MHA case.
  for (auto [rows, kv, Hk] : {std::tuple{1, 16, 8}, std::tuple{7, 100, 8}, std::tuple{128, 4096, 8},
                              std::tuple{512, 1000, 8}, std::tuple{33, 4096, 8},
                              std::tuple{512, 4096, 8}, std::tuple{128, 1024, 32}})
    for (int ps : {16, 64}) {
      const Level l = make_level(rng, 32, Hk, 128, ps, KVLayout::NHD, {{rows, kv}});
      check_level(l, std::to_string(rows) + " rows over " + std::to_string(kv) + " page " +
                         std::to_string(ps) + " Hk " + std::to_string(Hk));
    }
}

TEST_F(CudaAttentionSm90, CascadeStepEqualsPlainAttention) {
  // 96 decode rows over a shared prefix + own suffixes: the cascade step (shared level on the
  // sm90 kernel, split or not, one or two streams) against the CPU backend's plain attention,
  // and against the same step with the shared level on FA2.
  const int Hq = 32, Hk = 8, D = 128, ps = 16, batch = 96, own_tokens = 37;
  // The shared prefix holds whole pages only (cascade levels share full pages): 125 pages.
  const int prefix_pages = 125;
  const SharedPrefixDecode d =
      shared_prefix_decode(rng, Hq, Hk, D, ps, batch, prefix_pages, own_tokens, 1);
  const std::vector<float> ref = cpu_plain_attention(d);
  HostTensor poison{{batch, Hq * D}, std::vector<float>(size_t(batch) * Hq * D, std::nanf(""))};
  std::vector<float> fa2_out;
  for (SharedLevelKernel kernel : {SharedLevelKernel::FA2, SharedLevelKernel::SM90})
    for (const char* chunk : {"", "0", "5"})
      for (bool overlap : {false, true}) {
        if (kernel == SharedLevelKernel::FA2 && std::string(chunk) != "") continue;
        SCOPED_TRACE(::testing::Message() << (kernel == SharedLevelKernel::FA2 ? "fa2" : "sm90")
                                          << " chunk '" << chunk << "' overlap " << overlap);
        ChunkOverride over(chunk);
        CudaBackendOptions opt;
        opt.overlap_cascade_levels = overlap;
        opt.shared_level_kernel = kernel;
        std::unique_ptr<Backend> g = make_cuda_backend(0, opt);
        Tensor pg = g->upload(d.pages), og = g->upload(poison);
        auto plan = g->plan_attention(d.casc, d.shape);
        const std::vector<bool> uses = cuda_plan_uses_sm90_prefill(*plan);
        ASSERT_EQ(uses.size(), 2u);
        EXPECT_EQ(uses[0], kernel == SharedLevelKernel::SM90);
        EXPECT_FALSE(uses[1]);  // the own level is causal
        g->attention(*plan, g->upload(d.q), g->upload(d.k), g->upload(d.v), pg, og);
        const std::vector<float> out = g->to_host_f32(og);
        EXPECT_LE(rel_error(out, ref), kBf16Tol);
        if (kernel == SharedLevelKernel::FA2 && !overlap) fa2_out = out;
        if (!fa2_out.empty()) {
          EXPECT_LE(rel_error(out, fa2_out), kBf16Tol) << "vs FA2 cascade";
        }
      }
}

}  // namespace
}  // namespace nc::testing

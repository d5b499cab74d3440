// The CUDA backend's non-attention ops against the CPU backend on random inputs (bf16 tolerance).
#include <cuda_runtime_api.h>

#include <cmath>

#include "backend/cpu/cpu_ops.h"
#include "gpu_test_util.h"

namespace nc::testing {
namespace {

using CudaOps = GpuVsCpu;

TEST_F(CudaOps, UploadAndReadBack) {
  std::vector<float> v = random_vec(rng, 1000);
  auto [c, g] = both({10, 100}, v);
  EXPECT_EQ(gpu->to_host_f32(g), v);  // bf16-representable values survive exactly
  EXPECT_EQ(gpu->dtype(), DType::BF16);
  EXPECT_EQ(g.device(), Device::CUDA);
}

TEST_F(CudaOps, Embedding) {
  const int64_t V = 1000, H = 576, T = 37;
  auto [tc, tg] = both_random({V, H});
  std::vector<int32_t> ids(T);
  std::uniform_int_distribution<int32_t> id(0, V - 1);
  for (auto& x : ids) x = id(rng);
  ids[3] = ids[5];  // a repeated token
  auto [ic, ig] = both_i32(ids);
  auto [oc, og] = outputs({T, H});
  cpu->embedding(tc, ic, oc);
  gpu->embedding(tg, ig, og);
  EXPECT_EQ(err(*gpu, og, oc), 0.0);  // a copy: exact
}

TEST_F(CudaOps, RmsNorm) {
  for (int64_t H : {64, 576, 4096}) {
    const int64_t N = 33;
    auto [xc, xg] = both_random({N, H}, 3.0f);
    auto [wc, wg] = both_random({H});
    auto [oc, og] = outputs({N, H});
    cpu->rmsnorm(xc, wc, 1e-5f, oc);
    gpu->rmsnorm(xg, wg, 1e-5f, og);
    EXPECT_LE(err(*gpu, og, oc), kBf16Tol) << "H=" << H;
  }
}

TEST_F(CudaOps, AddRmsNorm) {
  const int64_t N = 21, H = 576;
  auto [xc, xg] = both_random({N, H});
  auto [rc, rg] = both_random({N, H}, 2.0f);
  auto [wc, wg] = both_random({H});
  cpu->add_rmsnorm(xc, rc, wc, 1e-6f);
  gpu->add_rmsnorm(xg, rg, wg, 1e-6f);
  EXPECT_LE(err(*gpu, rg, rc), kBf16Tol);
  EXPECT_LE(err(*gpu, xg, xc), kBf16Tol);
}

TEST_F(CudaOps, Linear) {
  struct Dims {
    int64_t n, k, m;
  };
  for (Dims d :
       {Dims{1, 576, 1536}, Dims{37, 576, 192}, Dims{256, 1024, 3072}, Dims{5, 64, 49152}}) {
    for (bool with_bias : {false, true}) {
      auto [xc, xg] = both_random({d.n, d.k});
      auto [wc, wg] = both_random({d.m, d.k}, 0.05f);
      Tensor bc, bg;
      if (with_bias) std::tie(bc, bg) = both_random({d.m});
      auto [oc, og] = outputs({d.n, d.m});
      cpu->linear(xc, wc, bc, oc);
      gpu->linear(xg, wg, bg, og);
      EXPECT_LE(err(*gpu, og, oc), kBf16Tol)
          << d.n << "x" << d.k << "x" << d.m << " bias " << with_bias;
    }
  }
}

TEST_F(CudaOps, LinearFloat32Output) {
  // bf16 operands, float32 output and bias (logits keep their precision).
  for (bool with_bias : {false, true}) {
    auto [xc, xg] = both_random({19, 576});
    auto [wc, wg] = both_random({4000, 576}, 0.05f);
    Tensor bc, bg;
    if (with_bias) {
      std::vector<float> b = random_vec(rng, 4000);
      bc = cpu->alloc({4000}, DType::F32);
      bg = gpu->alloc({4000}, DType::F32);
      cpu->copy_from_host(bc, b.data());
      gpu->copy_from_host(bg, b.data());
    }
    std::vector<float> nan(19 * 4000, std::nanf(""));
    Tensor oc = cpu->alloc({19, 4000}, DType::F32), og = gpu->alloc({19, 4000}, DType::F32);
    gpu->copy_from_host(og, nan.data());
    cpu->linear(xc, wc, bc, oc);
    gpu->linear(xg, wg, bg, og);
    // Only the accumulation order differs from the CPU: far below bf16 rounding.
    EXPECT_LE(err(*gpu, og, oc), 1e-4) << "bias " << with_bias;
  }
}

TEST_F(CudaOps, LinearOnRowSlices) {
  // Views that start mid-buffer (as the model's workspace slices do).
  auto [xc, xg] = both_random({40, 576});
  auto [wc, wg] = both_random({192, 576}, 0.05f);
  auto [oc, og] = outputs({40, 192});
  cpu->linear(xc.slice(3, 20), wc, Tensor(), oc.slice(1, 18));
  gpu->linear(xg.slice(3, 20), wg, Tensor(), og.slice(1, 18));
  std::vector<float> o = gpu->to_host_f32(og.slice(1, 18)), r = cpu->to_host_f32(oc.slice(1, 18));
  EXPECT_LE(rel_error(o, r), kBf16Tol);
}

// cos/sin table as Hugging Face builds it for rope_theta 10000.
std::vector<float> cos_sin_table(int max_pos, int D) {
  std::vector<float> t(size_t(max_pos) * D);
  for (int p = 0; p < max_pos; ++p)
    for (int i = 0; i < D / 2; ++i) {
      const double inv = std::pow(10000.0, -2.0 * i / D);
      t[size_t(p) * D + i] = float(std::cos(p * inv));
      t[size_t(p) * D + D / 2 + i] = float(std::sin(p * inv));
    }
  return t;
}

TEST_F(CudaOps, RopeF32Table) {
  for (int D : {64, 96, 128, 256}) {
    const int T = 29, Hq = 9, Hk = 3, max_pos = 4096;
    std::vector<float> table = cos_sin_table(max_pos, D);
    Tensor tc = cpu->alloc({max_pos, D}, DType::F32), tg = gpu->alloc({max_pos, D}, DType::F32);
    cpu->copy_from_host(tc, table.data());
    gpu->copy_from_host(tg, table.data());
    std::vector<int32_t> pos(T);
    std::uniform_int_distribution<int32_t> pd(0, max_pos - 1);
    for (auto& p : pos) p = pd(rng);
    auto [pc, pg] = both_i32(pos);
    auto [qc, qg] = both_random({T, Hq * D});
    auto [kc, kg] = both_random({T, Hk * D});
    cpu_rope(qc, kc, pc, tc, D);
    cuda_rope(*gpu, qg, kg, pg, tg, D);
    EXPECT_LE(err(*gpu, qg, qc), kBf16Tol) << "D=" << D;
    EXPECT_LE(err(*gpu, kg, kc), kBf16Tol) << "D=" << D;
  }
}

// The fused split + q/k RMSNorm + rope against the CPU op (itself checked against rmsnorm and
// rope, tests/test_qkv_split_norm_rope.cc).
TEST_F(CudaOps, QkvSplitNormRope) {
  struct Dims {
    int T, Hq, Hk, D;
  };
  const int max_pos = 4096;
  for (Dims d : {Dims{1, 16, 8, 128}, Dims{37, 16, 8, 128}, Dims{5, 32, 8, 128},
                 Dims{19, 32, 8, 64}, Dims{3, 16, 8, 64}, Dims{1, 9, 3, 64}, Dims{7, 32, 8, 96},
                 Dims{2, 2, 1, 96}, Dims{11, 8, 4, 256}, Dims{1, 2, 1, 256}})
    for (bool norms : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "T=" << d.T << " Hq=" << d.Hq << " Hk=" << d.Hk
                                        << " D=" << d.D << " norms " << norms);
      const int64_t QW = int64_t(d.Hq) * d.D, KW = int64_t(d.Hk) * d.D;
      std::vector<float> table = cos_sin_table(max_pos, d.D);
      Tensor tc = cpu->alloc({max_pos, d.D}, DType::F32);
      Tensor tg = gpu->alloc({max_pos, d.D}, DType::F32);
      cpu->copy_from_host(tc, table.data());
      gpu->copy_from_host(tg, table.data());
      std::vector<int32_t> pos(size_t(d.T));
      std::uniform_int_distribution<int32_t> pd(0, max_pos - 1);
      for (auto& p : pos) p = pd(rng);
      auto [pc, pg] = both_i32(pos);
      auto [xc, xg] = both_random({d.T, QW + 2 * KW}, 3.0f);
      Tensor qnc, qng, knc, kng;
      if (norms) {
        std::vector<float> qn = random_vec(rng, size_t(d.D), 0.2f),
                           kn = random_vec(rng, size_t(d.D), 0.2f);
        for (float& x : qn) x = round_bf16(x + 1.0f);
        for (float& x : kn) x = round_bf16(x + 1.0f);
        std::tie(qnc, qng) = both({d.D}, qn);
        std::tie(knc, kng) = both({d.D}, kn);
      }
      auto [qc, qg] = outputs({d.T, QW});
      auto [kc, kg] = outputs({d.T, KW});
      auto [vc, vg] = outputs({d.T, KW});
      cpu->qkv_split_norm_rope(xc, qnc, knc, 1e-6f, pc, tc, d.D, qc, kc, vc);
      gpu->qkv_split_norm_rope(xg, qng, kng, 1e-6f, pg, tg, d.D, qg, kg, vg);
      EXPECT_LE(err(*gpu, qg, qc), kBf16Tol);
      EXPECT_LE(err(*gpu, kg, kc), kBf16Tol);
      EXPECT_EQ(err(*gpu, vg, vc), 0.0);  // v is a copy
    }
  // Inside a CUDA graph: record once, change the positions, replay.
  {
    const int T = 4, Hq = 16, Hk = 8, D = 128;
    std::vector<float> table = cos_sin_table(max_pos, D);
    Tensor tc = cpu->alloc({max_pos, D}, DType::F32), tg = gpu->alloc({max_pos, D}, DType::F32);
    cpu->copy_from_host(tc, table.data());
    gpu->copy_from_host(tg, table.data());
    auto [xc, xg] = both_random({T, (Hq + 2 * Hk) * D});
    auto [wc, wg] = both_random({D});
    std::vector<int32_t> pos{0, 1, 2, 3};
    auto [pc, pg] = both_i32(pos);
    auto [qc, qg] = outputs({T, Hq * D});
    auto [kc, kg] = outputs({T, Hk * D});
    auto [vc, vg] = outputs({T, Hk * D});
    gpu->begin_capture();
    gpu->qkv_split_norm_rope(xg, wg, wg, 1e-6f, pg, tg, D, qg, kg, vg);
    gpu->end_capture(0);
    pos = {100, 7, 4000, 9};
    cpu->copy_from_host(pc, pos.data());
    gpu->copy_from_host(pg, pos.data());
    gpu->replay(0);
    cpu->qkv_split_norm_rope(xc, wc, wc, 1e-6f, pc, tc, D, qc, kc, vc);
    EXPECT_LE(err(*gpu, qg, qc), kBf16Tol);
    EXPECT_LE(err(*gpu, kg, kc), kBf16Tol);
    EXPECT_EQ(err(*gpu, vg, vc), 0.0);
    gpu->clear_graphs();
  }
}

TEST_F(CudaOps, QkvSplitNormRopeRejectsBadInput) {
  const int D = 64;
  Tensor tg = gpu->alloc({16, D}, DType::F32);
  auto [pc, pg] = both_i32({1, 2});
  auto [xc, xg] = both_random({2, 4 * D});
  Tensor q = gpu->alloc({2, 2 * D}, DType::BF16), k = gpu->alloc({2, D}, DType::BF16),
         v = gpu->alloc({2, D}, DType::BF16);
  EXPECT_THROW(
      gpu->qkv_split_norm_rope(xg.slice(0, 1), Tensor(), Tensor(), 1e-6f, pg, tg, D, q, k, v),
      Error);  // rows != positions
  Tensor f32q = gpu->alloc({2, 2 * D}, DType::F32);
  EXPECT_THROW(gpu->qkv_split_norm_rope(xg, Tensor(), Tensor(), 1e-6f, pg, tg, D, f32q, k, v),
               Error);  // dtype
  Tensor t80 = gpu->alloc({16, 80}, DType::F32);
  Tensor x80 = gpu->alloc({2, 4 * 80}, DType::BF16), q80 = gpu->alloc({2, 2 * 80}, DType::BF16),
         k80 = gpu->alloc({2, 80}, DType::BF16), v80 = gpu->alloc({2, 80}, DType::BF16);
  EXPECT_THROW(gpu->qkv_split_norm_rope(x80, Tensor(), Tensor(), 1e-6f, pg, t80, 80, q80, k80, v80),
               Error);  // head_dim 80
  EXPECT_THROW(gpu->qkv_split_norm_rope(xc, Tensor(), Tensor(), 1e-6f, pg, tg, D, q, k, v),
               Error);  // CPU input
}

TEST_F(CudaOps, SiluAndMul) {
  for (int64_t I : {1536, 100, 7}) {
    const int64_t T = 17;
    auto [gc, gg] = both_random({T, 2 * I}, 2.0f);
    auto [oc, og] = outputs({T, I});
    cpu->silu_and_mul(gc, oc);
    gpu->silu_and_mul(gg, og);
    EXPECT_LE(err(*gpu, og, oc), kBf16Tol) << "I=" << I;
  }
}

TEST_F(CudaOps, AddCopyRowsGatherRows) {
  auto [xc, xg] = both_random({13, 96});
  auto [yc, yg] = both_random({13, 96});
  cpu->add(xc, yc);
  gpu->add(xg, yg);
  EXPECT_LE(err(*gpu, xg, xc), kBf16Tol);

  auto [cc, cg] = outputs({13, 96});
  cpu->copy_rows(xc, cc);
  gpu->copy_rows(xg, cg);
  EXPECT_EQ(gpu->to_host_f32(cg), gpu->to_host_f32(xg));

  std::vector<int32_t> rows{12, 0, 5, 5, 7};
  auto [rc, rg] = both_i32(rows);
  auto [oc, og] = outputs({5, 96});
  cpu->gather_rows(xc, rc, oc);
  gpu->gather_rows(xg, rg, og);
  std::vector<float> g = gpu->to_host_f32(og), x = gpu->to_host_f32(xg);
  for (size_t i = 0; i < rows.size(); ++i)
    for (int j = 0; j < 96; ++j) ASSERT_EQ(g[i * 96 + j], x[size_t(rows[i]) * 96 + j]);
  EXPECT_LE(err(*gpu, og, oc), kBf16Tol);
}

// scatter_ids (how asynchronous scheduling feeds sampled ids to the next step) as on the CPU;
// pairs outside either array change nothing on the GPU and are refused on the CPU.
TEST_F(CudaOps, ScatterIds) {
  const std::vector<int32_t> src = {70, 71, 72, 73, 74}, pairs = {3, 4, 0, 0, 7, 2, 5, 1};
  auto ids = [&](Backend& b, const std::vector<int32_t>& v) {
    Tensor t = b.alloc({int64_t(v.size())}, DType::I32);
    b.copy_from_host(t, v.data());
    return t;
  };
  const std::vector<int32_t> before = {1, 2, 3, 4, 5, 6, 7, 8};
  Tensor dc = ids(*cpu, before), dg = ids(*gpu, before);
  cpu->scatter_ids(ids(*cpu, src), ids(*cpu, pairs), dc);
  gpu->scatter_ids(ids(*gpu, src), ids(*gpu, pairs), dg);
  std::vector<int32_t> got(before.size());
  ASSERT_EQ(cudaMemcpy(got.data(), dg.data(), got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  const std::vector<int32_t> want = {70, 2, 3, 74, 5, 71, 7, 72};
  EXPECT_EQ(got, want);
  EXPECT_EQ(std::vector<int32_t>(dc.ptr<int32_t>(), dc.ptr<int32_t>() + 8), want);
  const std::vector<int32_t> bad = {0, 9};
  std::vector<int32_t> keep = got;
  gpu->scatter_ids(ids(*gpu, src), ids(*gpu, bad), dg);
  ASSERT_EQ(cudaMemcpy(got.data(), dg.data(), got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(got, keep);
  EXPECT_THROW(cpu->scatter_ids(ids(*cpu, src), ids(*cpu, bad), dc), Error);
}

TEST_F(CudaOps, RejectsBadInput) {
  auto [xc, xg] = both_random({4, 64});
  auto [wc, wg] = both_random({32, 48});
  Tensor out = gpu->alloc({4, 32}, DType::BF16);
  EXPECT_THROW(gpu->linear(xg, wg, Tensor(), out), Error);                      // K mismatch
  EXPECT_THROW(gpu->rmsnorm(xc, xg.slice(0, 1).view({64}), 1e-5f, xg), Error);  // CPU tensor
  Tensor f = gpu->alloc({4, 64}, DType::F32);
  EXPECT_THROW(gpu->add(xg, f), Error);  // dtype mismatch
  EXPECT_THROW(make_cuda_backend(1 << 20), Error);
}

}  // namespace
}  // namespace nc::testing

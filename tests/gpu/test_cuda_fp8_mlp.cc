// The FP8 gated MLP with fewer kernels (backend/cuda/fp8_gemm.h: Fp8Gemm::silu_mlp, and the
// fp8_silu_mul_quantize kernel of fp8_mlp.cu):
//   - where all rows fit one chunk, its output equals the unfused ops' (linear, silu_and_mul,
//     linear) bit for bit, with dynamic and static activation scales for the down projection,
//     an all-zero row and rows of very different magnitudes; and it is close to the CPU's
//     float32 form (which rounds nothing to bf16 between the ops: 3e-2 norm-wise, against O(1)
//     for a wrong scale, code or row);
//   - with more rows than one chunk (gate_up's GEMM then runs in smaller chunks) it stays within
//     the bf16 output tolerance of the unfused ops;
//   - rows as wide as the kernels' shared memory allows past 48 KB (the opt-in) fuse too;
//   - it declines (returns false, nothing written) where it does not apply: one row (the GEMV's),
//     bf16 weights, an intermediate width cuBLASLt cannot take;
//   - Backend::silu_mlp on the CUDA backend takes it, and a graph capture replays it;
//   - the add_rmsnorm folded into the quantiser (add_rmsnorm_linear, silu_mlp with a norm,
//     fp8_norm.cu): the residual equals add_rmsnorm's bit for bit, the normalised rows agree with
//     add_rmsnorm's within one bf16 step (another summation order of the squares: 2e-3
//     norm-wise), the outputs with the unfused ops' within 5e-3 and with the CPU's within 3e-2.
#include <cmath>
#include <string>

#include "backend/cuda/fp8_gemm.h"
#include "backend/cuda/fp8_kernels.h"
#include "core/error.h"
#include "gpu_test_util.h"

namespace nc::testing {
namespace {

using cuda_host::cuda_fp8_gemm;

class CudaFp8Mlp : public GpuVsCpu {
 protected:
  struct Weights {
    Fp8Weight gate_up, down;
    Tensor gate_up_gpu, down_gpu, gate_up_cpu, down_cpu;
  };
  // Row r of a [rows, cols] matrix scaled by 2^(r % 7 - 3).
  HostTensor graded(int64_t rows, int64_t cols, float scale = 1.0f) {
    std::vector<float> v = random_vec(rng, size_t(rows * cols), scale);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        v[size_t(r * cols + c)] = round_bf16(v[size_t(r * cols + c)] * std::ldexp(1.0f, r % 7 - 3));
    return HostTensor{{rows, cols}, v};
  }
  Weights weights(int64_t H, int64_t I, int64_t M, float down_input_scale) {
    Weights w;
    w.gate_up = quantize_fp8_weight(graded(2 * I, H, 0.05f));
    w.down = quantize_fp8_weight(graded(M, I, 0.05f));
    w.down.input_scale = down_input_scale;
    w.gate_up_gpu = gpu->upload_fp8_linear(w.gate_up);
    w.down_gpu = gpu->upload_fp8_linear(w.down);
    w.gate_up_cpu = cpu->upload_fp8_linear(w.gate_up);
    w.down_cpu = cpu->upload_fp8_linear(w.down);
    return w;
  }
  Tensor nan_bf16(int64_t rows, int64_t cols) {
    return gpu->upload(HostTensor{{rows, cols}, std::vector<float>(size_t(rows * cols), NAN)});
  }
  // The unfused ops on the GPU: linear, then silu_and_mul and linear (the CUDA backend's
  // silu_mul_linear fuses only bf16 weights).
  std::vector<float> unfused(const Tensor& x, const Weights& w,
                             std::vector<float>* gate_up = nullptr) {
    const int64_t N = x.dim(0), I = w.down.cols, M = w.down.rows;
    Tensor gu = nan_bf16(N, 2 * I), act = nan_bf16(N, I), out = nan_bf16(N, M);
    gpu->linear(x, w.gate_up_gpu, Tensor(), gu);
    if (gate_up) *gate_up = gpu->to_host_f32(gu);
    gpu->silu_mul_linear(gu, w.down_gpu, Tensor(), out, act);
    return gpu->to_host_f32(out);
  }
  // Where cuBLASLt takes outer-vector scales (not Hopper with CUDA 13.0), linear() rounds once
  // and silu_mlp declines by design (fp8_gemm.h).
  bool lt_outer_available(const Tensor& x, const Weights& w) {
    const Tensor o = gpu->alloc({x.dim(0), w.gate_up.rows}, DType::BF16);
    return cuda_fp8_gemm(*gpu).chosen(x, w.gate_up_gpu, Tensor(), o) == cuda_host::Fp8Path::LtOuter;
  }
  std::vector<float> fused(const Tensor& x, const Weights& w, bool* applied) {
    const int64_t N = x.dim(0), I = w.down.cols, M = w.down.rows;
    Tensor gu = nan_bf16(N, 2 * I), out = nan_bf16(N, M);
    *applied = cuda_fp8_gemm(*gpu).silu_mlp(x, w.gate_up_gpu, w.down_gpu, gu, out, nullptr);
    return gpu->to_host_f32(out);
  }
  std::vector<float> on_cpu(const HostTensor& x, const Weights& w) {
    const int64_t N = x.shape[0], I = w.down.cols, M = w.down.rows;
    Tensor gu = cpu->alloc({N, 2 * I}, DType::F32), act = cpu->alloc({N, I}, DType::F32);
    Tensor out = cpu->alloc({N, M}, DType::F32);
    cpu->silu_mlp(cpu->upload(x), w.gate_up_cpu, w.down_cpu, gu, act, out, nullptr);
    return cpu->to_host_f32(out);
  }
};

int bit_differences(const std::vector<float>& a, const std::vector<float>& b) {
  int bad = 0;
  for (size_t i = 0; i < a.size(); ++i) bad += !(a[i] == b[i]);  // NaN counts as different
  return bad;
}

TEST_F(CudaFp8Mlp, EqualsTheUnfusedOpsBitForBitAndIsCloseToTheCpu) {
  struct Shape3 {
    int64_t H, I, M;
  };
  for (const Shape3 s : {Shape3{576, 1536, 576}, Shape3{1024, 3072, 1024}, Shape3{256, 512, 128}}) {
    for (float down_input_scale : {0.0f, 0.02f}) {
      const Weights w = weights(s.H, s.I, s.M, down_input_scale);
      for (int64_t N : {2, 16, 37, 300}) {
        SCOPED_TRACE("H " + std::to_string(s.H) + " I " + std::to_string(s.I) + " M " +
                     std::to_string(s.M) + " N " + std::to_string(N) + " static scale " +
                     std::to_string(down_input_scale));
        HostTensor xh = graded(N, s.H);
        std::fill(xh.data.begin(), xh.data.begin() + s.H, 0.0f);  // row 0 all zero
        const Tensor x = gpu->upload(xh);
        if (lt_outer_available(x, w)) GTEST_SKIP() << "cuBLASLt has outer-vector scales here";
        bool applied = false;
        const std::vector<float> got = fused(x, w, &applied);
        ASSERT_TRUE(applied);
        const std::vector<float> want = unfused(x, w);
        EXPECT_EQ(bit_differences(got, want), 0);
        const double e = rel_error(got, on_cpu(xh, w));
        std::printf("fp8 mlp H %ld I %ld M %ld N %ld scale %g: %.2e against the CPU\n", long(s.H),
                    long(s.I), long(s.M), long(N), double(down_input_scale), e);
        EXPECT_LE(e, 3e-2);
      }
    }
  }
}

TEST_F(CudaFp8Mlp, RowsBeyondOneChunk) {
  // I = 16384: chunk_rows(I) = 2048 rows, so 2085 rows run as 2048 + 37 (gate_up's own chunk
  // would take them all at once).
  const int64_t H = 256, I = 16384, M = 256, N = 2085;
  ASSERT_EQ(cuda_host::Fp8Gemm::chunk_rows(I), 2048);
  const Weights w = weights(H, I, M, 0.0f);
  const Tensor x = gpu->upload(graded(N, H));
  if (lt_outer_available(x, w)) GTEST_SKIP() << "cuBLASLt has outer-vector scales here";
  bool applied = false;
  const std::vector<float> got = fused(x, w, &applied);
  ASSERT_TRUE(applied);
  EXPECT_LE(rel_error(got, unfused(x, w)), 5e-3);
}

TEST_F(CudaFp8Mlp, WidestRowsTakeTheSharedMemoryOptIn) {
  // I = 24576: the activation row is 48 KB of shared memory, past what a launch gets without
  // opting in; bit for bit as the unfused ops.
  const int64_t H = 256, I = 24576, M = 128, N = 5;
  ASSERT_LE(I, cuda::fp8_silu_mul_quantize_max_inter());
  const Weights w = weights(H, I, M, 0.0f);
  const Tensor x = gpu->upload(graded(N, H));
  if (lt_outer_available(x, w)) GTEST_SKIP() << "cuBLASLt has outer-vector scales here";
  bool applied = false;
  const std::vector<float> got = fused(x, w, &applied);
  ASSERT_TRUE(applied);
  EXPECT_EQ(bit_differences(got, unfused(x, w)), 0);
}

TEST_F(CudaFp8Mlp, DeclinesWhereItDoesNotApply) {
  const Weights w = weights(256, 512, 128, 0.0f);
  bool applied = true;
  fused(gpu->upload(graded(1, 256)), w, &applied);  // one row: the GEMV's
  EXPECT_FALSE(applied);
  // bf16 weights
  const Tensor gu_bf16 = gpu->upload(graded(1024, 256)), down_bf16 = gpu->upload(graded(128, 512));
  Tensor gu = nan_bf16(16, 1024), out = nan_bf16(16, 128);
  EXPECT_FALSE(cuda_fp8_gemm(*gpu).silu_mlp(gpu->upload(graded(16, 256)), gu_bf16, down_bf16, gu,
                                            out, nullptr));
  EXPECT_TRUE(std::isnan(gpu->to_host_f32(out)[0]));  // nothing was written
  // I = 520 is a multiple of 8 but not of 16: cuBLASLt's FP8 GEMM cannot take it.
  const Weights odd = weights(256, 520, 128, 0.0f);
  const std::vector<float> odd_out = fused(gpu->upload(graded(16, 256)), odd, &applied);
  EXPECT_FALSE(applied);
  EXPECT_TRUE(std::isnan(odd_out[0]));
}

TEST_F(CudaFp8Mlp, BackendOpTakesItAndGraphsReplayIt) {
  const int64_t H = 576, I = 1536, M = 576, N = 64;
  const Weights w = weights(H, I, M, 0.0f);
  const Tensor x = gpu->upload(graded(N, H));
  if (lt_outer_available(x, w)) GTEST_SKIP() << "cuBLASLt has outer-vector scales here";
  std::vector<float> scaled_gate_up;
  const std::vector<float> want = unfused(x, w, &scaled_gate_up);
  Tensor gu = nan_bf16(N, 2 * I), act = nan_bf16(N, I), out = nan_bf16(N, M);
  gpu->silu_mlp(x, w.gate_up_gpu, w.down_gpu, gu, act, out, nullptr);
  EXPECT_EQ(bit_differences(gpu->to_host_f32(out), want), 0);
  // The fused path ran: its gate_up scratch holds the unscaled sums, not linear()'s values.
  EXPECT_GT(bit_differences(gpu->to_host_f32(gu), scaled_gate_up), int(N * I));
  if (!gpu->supports_graphs()) GTEST_SKIP() << "no graphs on this backend";
  Tensor out2 = nan_bf16(N, M);
  gpu->begin_capture();
  gpu->silu_mlp(x, w.gate_up_gpu, w.down_gpu, gu, act, out2, nullptr);
  gpu->end_capture(7);
  gpu->replay(7);
  EXPECT_EQ(bit_differences(gpu->to_host_f32(out2), want), 0);
  gpu->clear_graphs();
}

// The norm's inputs on the GPU twice (the fused and the unfused path each change them) and on
// the CPU.
struct NormCase {
  HostTensor x, residual, weight;
};

TEST_F(CudaFp8Mlp, NormRidesTheQuantiser) {
  const int64_t H = 1024, I = 3072, M = 1024;
  const Weights w = weights(H, I, M, 0.0f);
  for (int64_t N : {1, 5, 64}) {
    SCOPED_TRACE("N " + std::to_string(N));
    NormCase c{graded(N, H), graded(N, H, 4.0f), HostTensor{{H}, random_vec(rng, size_t(H), 0.3f)}};
    const float eps = 1e-5f;
    const Tensor norm_w = gpu->upload(c.weight);
    // add_rmsnorm_linear: fused on the GPU against add_rmsnorm then linear on the GPU.
    Tensor xf = gpu->upload(c.x), rf = gpu->upload(c.residual), xu = gpu->upload(c.x),
           ru = gpu->upload(c.residual);
    ASSERT_TRUE(cuda_fp8_gemm(*gpu).norm_fusable(xf, AddNorm{rf, norm_w, eps}));
    Tensor of = nan_bf16(N, 2 * I), ou = nan_bf16(N, 2 * I);
    gpu->add_rmsnorm_linear(xf, AddNorm{rf, norm_w, eps}, w.gate_up_gpu, Tensor(), of);
    gpu->add_rmsnorm(xu, ru, norm_w, eps);
    gpu->linear(xu, w.gate_up_gpu, Tensor(), ou);
    EXPECT_EQ(bit_differences(gpu->to_host_f32(rf), gpu->to_host_f32(ru)), 0) << "residual";
    EXPECT_LE(rel_error(gpu->to_host_f32(xf), gpu->to_host_f32(xu)), 2e-3) << "normalised x";
    EXPECT_LE(rel_error(gpu->to_host_f32(of), gpu->to_host_f32(ou)), 5e-3) << "gate_up";
    // The CPU's add_rmsnorm_linear (float32 throughout).
    Tensor xc = cpu->upload(c.x), rc = cpu->upload(c.residual),
           oc = cpu->alloc({N, 2 * I}, DType::F32);
    cpu->add_rmsnorm_linear(xc, AddNorm{rc, cpu->upload(c.weight), eps}, w.gate_up_cpu, Tensor(),
                            oc);
    EXPECT_LE(rel_error(gpu->to_host_f32(of), cpu->to_host_f32(oc)), 3e-2) << "against the CPU";
    // silu_mlp with the norm: fused against add_rmsnorm then the unfused ops.
    Tensor xm = gpu->upload(c.x), rm = gpu->upload(c.residual), gu = nan_bf16(N, 2 * I),
           act = nan_bf16(N, I), om = nan_bf16(N, M);
    const AddNorm norm{rm, norm_w, eps};
    gpu->silu_mlp(xm, w.gate_up_gpu, w.down_gpu, gu, act, om, &norm);
    Tensor xv = gpu->upload(c.x), rv = gpu->upload(c.residual);
    gpu->add_rmsnorm(xv, rv, norm_w, eps);
    EXPECT_EQ(bit_differences(gpu->to_host_f32(rm), gpu->to_host_f32(rv)), 0) << "mlp residual";
    EXPECT_LE(rel_error(gpu->to_host_f32(om), unfused(xv, w)), 5e-3) << "mlp output";
  }
}

TEST_F(CudaFp8Mlp, NormOverTwoChunksAndTheWidestRows) {
  // K = 12288: the row's float32 sums are 48 KB of shared memory (the opt-in), and
  // chunk_rows(K) = 2720, so 2725 rows run as two chunks (the residual offset of the second).
  const int64_t H = 12288, M = 64, N = 2725;
  ASSERT_EQ(cuda_host::Fp8Gemm::chunk_rows(H), 2720);
  ASSERT_LE(H, cuda::fp8_add_rmsnorm_quantize_max_k());
  Fp8Weight q = quantize_fp8_weight(graded(M, H, 0.05f));
  const Tensor wg = gpu->upload_fp8_linear(q);
  const HostTensor xh = graded(N, H), rh = graded(N, H, 2.0f);
  const Tensor norm_w = gpu->upload(HostTensor{{H}, random_vec(rng, size_t(H), 0.3f)});
  Tensor xf = gpu->upload(xh), rf = gpu->upload(rh), xu = gpu->upload(xh), ru = gpu->upload(rh);
  Tensor of = nan_bf16(N, M), ou = nan_bf16(N, M);
  gpu->add_rmsnorm_linear(xf, AddNorm{rf, norm_w, 1e-6f}, wg, Tensor(), of);
  gpu->add_rmsnorm(xu, ru, norm_w, 1e-6f);
  gpu->linear(xu, wg, Tensor(), ou);
  EXPECT_EQ(bit_differences(gpu->to_host_f32(rf), gpu->to_host_f32(ru)), 0) << "residual";
  EXPECT_LE(rel_error(gpu->to_host_f32(xf), gpu->to_host_f32(xu)), 2e-3) << "normalised x";
  EXPECT_LE(rel_error(gpu->to_host_f32(of), gpu->to_host_f32(ou)), 5e-3) << "output";
}

TEST_F(CudaFp8Mlp, NormThatCannotRideIsRefusedByName) {
  const Weights w = weights(256, 512, 128, 0.0f);
  const Tensor x = gpu->upload(graded(4, 256));
  const Tensor short_residual = gpu->upload(graded(3, 256));  // not x's shape
  const AddNorm bad{short_residual, gpu->upload(HostTensor{{256}, std::vector<float>(256, 1.0f)}),
                    1e-5f};
  EXPECT_FALSE(cuda_fp8_gemm(*gpu).norm_fusable(x, bad));
  Tensor out = nan_bf16(4, 1024);
  EXPECT_THROW(cuda_fp8_gemm(*gpu).linear(x, w.gate_up_gpu, Tensor(), out, cuda_host::Fp8Path::Auto,
                                          false, &bad),
               Error);
}

}  // namespace
}  // namespace nc::testing

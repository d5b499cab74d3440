// The CUDA FP8 linear (backend/cuda/fp8_gemm.h) against the CPU reference (backend/cpu/cpu_fp8.h):
//   - the activation quantiser's codes and scales equal the CPU rule's bit for bit (dynamic and
//     static scales, an all-zero row, huge and tiny rows, widths with and without 16-byte loads);
//   - the product at N = 1, 3, 16, 64, 300 rows over K = 576, 1536, 4096, through the rule's
//     choice and through each kernel forced (the GEMV and cuBLASLt's FP8 GEMM), with a static
//     input scale that saturates, all-zero rows, a bias, float32 output, shapes cuBLASLt cannot
//     take, and more rows than one scratch chunk;
//   - a capture into a CUDA graph replays the eager result, with new inputs too;
//   - the capability check refuses GPUs below compute capability 8.9 by name.
//
// Tolerances: both backends multiply the same e4m3 values (each product exact in float32) and
// sum in float32 in different orders (the CPU's 8 lanes; the GEMV's lanes and warps; cuBLASLt's
// tensor-core partial sums, promoted to float32 every few k-blocks since fast accumulation is
// off): relative differences of order 1e-5 to 1e-4. A bf16 output rounds each value once more
// (at most 2^-9 relative, ~1.1e-3 norm-wise for uniform rounding errors), twice where the bias is
// added after cuBLASLt's bf16 output. Hence 5e-3 for bf16 and 1e-3 for float32 outputs, far
// below what a wrong code, scale or row gives (O(1); an e4m3 step alone is 6-12%).
#include <cmath>
#include <cstdio>

#include "backend/cuda/fp8_gemm.h"
#include "core/error.h"
#include "core/fp8.h"
#include "gpu_test_util.h"

namespace nc::testing {
namespace {

using cuda_host::cuda_fp8_gemm;
using cuda_host::Fp8Path;

constexpr double kBf16OutTol = 5e-3, kF32OutTol = 1e-3;

// A [rows, cols] bf16-exact matrix whose rows have magnitudes 2^-6 .. 2^2 (row r: 2^(r % 9 - 6)),
// so per-row scales matter.
HostTensor graded(std::mt19937& rng, int64_t rows, int64_t cols) {
  std::vector<float> v = random_vec(rng, size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) v[size_t(r * cols + c)] *= std::ldexp(1.0f, int(r % 9) - 6);
  return HostTensor{{rows, cols}, v};
}

class CudaFp8Linear : public GpuVsCpu {
 protected:
  struct Weight {
    Fp8Weight q;
    Tensor cpu, gpu;
  };
  Weight weight(int64_t m, int64_t k, float input_scale = 0) {
    Weight w;
    w.q = quantize_fp8_weight(graded(rng, m, k));
    w.q.input_scale = input_scale;
    w.cpu = cpu->upload_fp8_linear(w.q);
    w.gpu = gpu->upload_fp8_linear(w.q);
    return w;
  }
  // out = x w^T (+ bias) on both backends; the GPU's through `path` into a NaN-poisoned output of
  // `dtype`. Returns the relative error of the GPU's result against the CPU's.
  double compare(const HostTensor& x, const Weight& w, const std::vector<float>& bias, DType dtype,
                 Fp8Path path, std::vector<float>* gpu_out = nullptr) {
    const int64_t N = x.shape[0], M = w.q.rows;
    Tensor xc = cpu->upload(x), xg = gpu->upload(x), bc, bg;
    if (!bias.empty()) {
      bc = cpu->upload(HostTensor{{M}, bias});
      bg = upload_as(HostTensor{{M}, bias}, dtype);
    }
    Tensor oc = cpu->alloc({N, M}, DType::F32);
    Tensor og =
        upload_as(HostTensor{{N, M}, std::vector<float>(size_t(N * M), std::nanf(""))}, dtype);
    cpu->linear(xc, w.cpu, bc, oc);
    cuda_fp8_gemm(*gpu).linear(xg, w.gpu, bg, og, path);
    const std::vector<float> got = gpu->to_host_f32(og);
    if (gpu_out) *gpu_out = got;
    return rel_error(got, cpu->to_host_f32(oc));
  }
  Tensor upload_as(const HostTensor& h, DType dtype) {
    if (dtype == DType::BF16) return gpu->upload(h);
    Tensor t = gpu->alloc(h.shape, DType::F32);
    gpu->copy_from_host(t, h.data.data());
    return t;
  }
  int cc_major() {
    int v = 0;
    cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, 0);
    return v;
  }
};

// The CPU rule (fp8_weight.h) for one row: its scale and codes.
void cpu_quantize_row(const float* x, int64_t K, float input_scale, float* scale, uint8_t* codes) {
  *scale = fp8_activation_scale(x, K, input_scale);
  for (int64_t k = 0; k < K; ++k) codes[k] = f32_to_e4m3(x[k] / *scale);
}

TEST_F(CudaFp8Linear, QuantiserCodesAndScalesEqualTheCpuRule) {
  for (int64_t K : {576, 100}) {  // 16-byte loads, and value by value
    for (float input_scale : {0.0f, 0.01f}) {
      SCOPED_TRACE("K " + std::to_string(K) + ", input scale " + std::to_string(input_scale));
      const int64_t N = 37;
      HostTensor x = graded(rng, N, K);
      for (int64_t k = 0; k < K; ++k) {
        x.data[size_t(3 * K + k)] = 0;  // all zero: scale 1
        x.data[size_t(5 * K + k)] = round_bf16(x.data[size_t(5 * K + k)] * 3e4f);  // huge
        x.data[size_t(7 * K + k)] =
            round_bf16(x.data[size_t(7 * K + k)] * 1e-6f);  // subnormal codes
      }
      const Weight w = weight(64, K, input_scale);
      std::vector<uint8_t> codes;
      std::vector<float> scales;
      cuda_fp8_gemm(*gpu).quantize_for_test(gpu->upload(x), w.gpu, &codes, &scales);
      ASSERT_EQ(codes.size(), size_t(N * K));
      ASSERT_EQ(scales.size(), size_t(N));
      std::vector<uint8_t> want(static_cast<size_t>(K));
      int bad_codes = 0;
      for (int64_t n = 0; n < N; ++n) {
        float s = 0;
        cpu_quantize_row(x.data.data() + n * K, K, input_scale, &s, want.data());
        EXPECT_EQ(scales[size_t(n)], s) << "row " << n;
        for (int64_t k = 0; k < K; ++k) bad_codes += codes[size_t(n * K + k)] != want[size_t(k)];
      }
      EXPECT_EQ(bad_codes, 0);
      if (input_scale == 0) {
        EXPECT_EQ(scales[3], 1.0f);
      }
    }
  }
}

// Whether this cuBLASLt offers FP8 algorithms with outer-vector (per-row / per-column) scales
// here: measured 2026-12-06 on an H100 with CUDA 13.0's cuBLASLt (driver 580.159.04), it offers
// none, so linear() takes the GEMV at every row count there (correct, slow for prefill).
bool lt_has_outer_vector_fp8(Backend& gpu, const Tensor& w, int64_t K) {
  const Tensor x = gpu.alloc({64, K}, DType::BF16), o = gpu.alloc({64, w.dim(0)}, DType::BF16);
  return cuda_fp8_gemm(gpu).chosen(x, w, Tensor(), o) == Fp8Path::CublasLt;
}

TEST_F(CudaFp8Linear, MatchesTheCpuOverShapesRowsAndKernels) {
  bool lt = false;
  {
    const Weight probe = weight(1536, 576);
    lt = lt_has_outer_vector_fp8(*gpu, probe.gpu, 576);
    std::printf("fp8 linear: cuBLASLt FP8 with outer-vector scales %s on this GPU\n",
                lt ? "available" : "NOT available: the GEMV serves every row count");
  }
  for (auto [M, K] :
       std::vector<std::pair<int64_t, int64_t>>{{1536, 576}, {576, 1536}, {1024, 4096}}) {
    const Weight w = weight(M, K);
    for (int64_t N : {1, 3, 16, 64, 300}) {
      SCOPED_TRACE("N " + std::to_string(N) + ", M " + std::to_string(M) + ", K " +
                   std::to_string(K));
      const HostTensor x = graded(rng, N, K);
      Tensor xg = gpu->upload(x), og = gpu->alloc({N, M}, DType::BF16);
      const Fp8Path rule = cuda_fp8_gemm(*gpu).chosen(xg, w.gpu, Tensor(), og);
      if (N <= cuda_fp8_gemm(*gpu).gemv_max_rows()) {
        EXPECT_EQ(rule, Fp8Path::Gemv);
      } else {
        EXPECT_EQ(rule, lt ? Fp8Path::CublasLt : Fp8Path::Gemv);
      }
      for (Fp8Path p : {Fp8Path::Auto, Fp8Path::Gemv, Fp8Path::CublasLt}) {
        if (p == Fp8Path::CublasLt && !lt) continue;
        double e = -1;  // a throw (cuBLASLt without an algorithm) fails this case, not the rest
        EXPECT_NO_THROW(e = compare(x, w, {}, DType::BF16, p)) << cuda_host::fp8_path_name(p);
        EXPECT_LE(e, kBf16OutTol) << cuda_host::fp8_path_name(p);
        std::printf("fp8 linear N %ld M %ld K %ld %-8s rel err %.2e\n", long(N), long(M), long(K),
                    cuda_host::fp8_path_name(p), e);
      }
    }
  }
}

// A static scale half the largest row's dynamic one: that row's largest values saturate at 448
// on both backends alike.
TEST_F(CudaFp8Linear, StaticInputScaleSaturatesAsTheCpu) {
  const int64_t M = 512, K = 576;
  for (int64_t N : {3, 64}) {
    const HostTensor x = graded(rng, N, K);
    float amax = 0;
    for (float v : x.data) amax = std::max(amax, std::fabs(v));
    const Weight w = weight(M, K, 0.5f * amax / kE4M3Max);
    for (Fp8Path p : {Fp8Path::Auto, Fp8Path::Gemv})
      EXPECT_LE(compare(x, w, {}, DType::BF16, p), kBf16OutTol)
          << "N " << N << " " << cuda_host::fp8_path_name(p);
  }
}

// All-zero rows (scale 1, codes 0) give exactly the bias; bias in bf16 and, with a float32
// output, in float32.
TEST_F(CudaFp8Linear, ZeroRowsBiasAndFloat32Output) {
  const int64_t M = 768, K = 576;
  const Weight w = weight(M, K);
  const std::vector<float> bias = random_vec(rng, size_t(M), 0.5f);
  for (int64_t N : {1, 16, 64}) {
    HostTensor x = graded(rng, N, K);
    for (int64_t k = 0; k < K; ++k) x.data[size_t(k)] = 0;  // row 0
    for (DType dt : {DType::BF16, DType::F32}) {
      for (Fp8Path p : {Fp8Path::Auto, Fp8Path::Gemv}) {
        SCOPED_TRACE("N " + std::to_string(N) + " " + std::string(dtype_name(dt)) + " " +
                     cuda_host::fp8_path_name(p));
        std::vector<float> got;
        EXPECT_LE(compare(x, w, bias, dt, p, &got), dt == DType::BF16 ? kBf16OutTol : kF32OutTol);
        for (int64_t m = 0; m < M; ++m) ASSERT_EQ(got[size_t(m)], bias[size_t(m)]) << "col " << m;
      }
    }
  }
}

// K = 100, M = 50 (not multiples of 16): cuBLASLt's FP8 GEMM cannot run them; the rule takes
// the GEMV (byte loads) at every N, and forcing cuBLASLt is an error.
TEST_F(CudaFp8Linear, ShapesCublasLtCannotTakeRunTheGemv) {
  const Weight w = weight(50, 100);
  for (int64_t N : {1, 9, 64}) {
    const HostTensor x = graded(rng, N, 100);
    Tensor xg = gpu->upload(x), og = gpu->alloc({N, 50}, DType::BF16);
    EXPECT_EQ(cuda_fp8_gemm(*gpu).chosen(xg, w.gpu, Tensor(), og), Fp8Path::Gemv);
    EXPECT_LE(compare(x, w, {}, DType::BF16, Fp8Path::Auto), kBf16OutTol) << "N " << N;
    EXPECT_THROW(cuda_fp8_gemm(*gpu).linear(xg, w.gpu, Tensor(), og, Fp8Path::CublasLt), Error);
  }
}

// More rows than one chunk of the scratch: K = 16384 gives chunks of 2048 rows.
TEST_F(CudaFp8Linear, RowsBeyondOneScratchChunk) {
  const int64_t K = 16384, M = 64, N = 2100;
  ASSERT_EQ(cuda_host::Fp8Gemm::chunk_rows(K), 2048);
  const Weight w = weight(M, K);
  const HostTensor x = graded(rng, N, K);
  EXPECT_LE(compare(x, w, {}, DType::BF16, Fp8Path::Auto), kBf16OutTol);
  EXPECT_LE(compare(x, w, {}, DType::BF16, Fp8Path::Gemv), kBf16OutTol);
}

// The quantiser and both kernels inside a CUDA graph: no host synchronisation, no allocation; a
// replay after new inputs are copied in gives the eager result of those inputs bit for bit.
TEST_F(CudaFp8Linear, GraphReplayEqualsEager) {
  const int64_t M = 1024, K = 1536;
  const Weight w = weight(M, K);
  for (int64_t N : {2, 64}) {  // the GEMV, then cuBLASLt (where available)
    SCOPED_TRACE("N " + std::to_string(N));
    const HostTensor x1 = graded(rng, N, K), x2 = graded(rng, N, K);
    Tensor xg = gpu->upload(x1), og = gpu->alloc({N, M}, DType::BF16);
    gpu->linear(xg, w.gpu, Tensor(), og);  // eager first (as the model does before capturing)
    const int key = 9000 + int(N);
    gpu->begin_capture();
    gpu->linear(xg, w.gpu, Tensor(), og);
    gpu->end_capture(key);
    Tensor eager = gpu->alloc({N, M}, DType::BF16);
    for (const HostTensor* x : {&x1, &x2}) {
      const Tensor xin = gpu->upload(*x);
      gpu->copy_rows(xin, xg);
      gpu->replay(key);
      gpu->linear(xin, w.gpu, Tensor(), eager);
      EXPECT_EQ(gpu->to_host_f32(og), gpu->to_host_f32(eager));
    }
  }
}

TEST(CudaFp8Capability, BelowComputeCapability89IsRefusedNamingTheGpu) {
  for (auto [major, minor] : std::vector<std::pair<int, int>>{{7, 0}, {8, 0}, {8, 6}, {8, 7}}) {
    try {
      cuda_host::check_fp8_capability("cuda:0 (NVIDIA A100-SXM4-80GB)", major, minor);
      ADD_FAILURE() << "accepted " << major << "." << minor;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
      const std::string msg = e.what(), cc = std::to_string(major) + "." + std::to_string(minor);
      EXPECT_NE(msg.find("NVIDIA A100-SXM4-80GB"), std::string::npos) << msg;
      EXPECT_NE(msg.find(cc), std::string::npos) << msg;
    }
  }
  for (auto [major, minor] : std::vector<std::pair<int, int>>{{8, 9}, {9, 0}, {10, 0}, {12, 0}})
    EXPECT_NO_THROW(cuda_host::check_fp8_capability("gpu", major, minor));
}

}  // namespace
}  // namespace nc::testing

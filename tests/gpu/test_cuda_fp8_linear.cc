// The CUDA FP8 linear (backend/cuda/fp8_gemm.h) against the CPU reference (backend/cpu/cpu_fp8.h):
//   - the activation quantiser's codes and scales equal the CPU rule's bit for bit (dynamic and
//     static scales, an all-zero row, huge and tiny rows, widths with and without 16-byte loads);
//   - each path forced (CudaFp8Path/<Auto|Gemv|LtOuter|LtEpilogue>: the rule's choice, the
//     GEMV, cuBLASLt with outer-vector scales, cuBLASLt with unit scales plus our epilogue) at
//     N = 1, 3, 16, 64, 300, 2048 rows over K = 576, 1536, 4096, with and without a bias, bf16
//     and float32 outputs, an all-zero row (exactly the bias), a static input scale that
//     saturates, and more rows than one scratch chunk; the rule's pick at each N is printed and
//     checked against the order of fp8_gemm.h; a path the GPU's cuBLASLt has no algorithm for
//     is skipped with that reason (GTEST_SKIP), cases it misses are printed;
//   - shapes cuBLASLt cannot take run the GEMV, and forcing a cuBLASLt path there throws;
//   - the epilogue kernel alone equals the contract's float32 expression bit for bit;
//   - a capture into a CUDA graph replays the eager result bit for bit, with new inputs too;
//   - the capability check refuses GPUs below compute capability 8.9 by name.
//
// Tolerances: both backends multiply the same e4m3 values (each product exact in float32) and
// sum in float32 in different orders (the CPU's 8 lanes; the GEMV's lanes and warps; cuBLASLt's
// tensor-core partial sums, promoted to float32 every few k-blocks since fast accumulation is
// off): relative differences of order 1e-5 to 1e-4. A bf16 output rounds each value once more
// (at most 2^-8 relative, ~1.3e-3 norm-wise for uniform rounding errors), twice on lt-epilogue
// (cuBLASLt's bf16 output, then the epilogue's: ~1.9e-3) and where the bias is added after
// lt-outer's bf16 output. Hence 5e-3 for bf16 and 1e-3 for float32 outputs, far below what a
// wrong code, scale or row gives (O(1); an e4m3 step alone is 6-12%).
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <tuple>

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

// ---- Each path forced (GetParam) ----------------------------------------------------------

// One shape's inputs and the CPU's outputs, shared by every path's test (the CPU product at
// N = 2048, K = 4096 is the slow part). Row 0 of x is all zero.
struct RefCase {
  Fp8Weight q;
  HostTensor x;
  std::vector<float> bias, ref, ref_bias;  // CPU outputs without and with the bias
};

class CudaFp8Path : public CudaFp8Linear, public ::testing::WithParamInterface<Fp8Path> {
 protected:
  const RefCase& ref_case(int64_t M, int64_t K, int64_t N) {
    static std::map<std::tuple<int64_t, int64_t, int64_t>, std::unique_ptr<RefCase>> cache;
    std::unique_ptr<RefCase>& c = cache[{M, K, N}];
    if (c) return *c;
    c = std::make_unique<RefCase>();
    std::mt19937 r(uint32_t(M * 131 + K * 7 + N));  // the same data whichever test asks first
    c->q = quantize_fp8_weight(graded(r, M, K));
    c->x = graded(r, N, K);
    std::fill(c->x.data.begin(), c->x.data.begin() + K, 0.0f);
    c->bias = random_vec(r, size_t(M), 0.5f);
    const Tensor wc = cpu->upload_fp8_linear(c->q), xc = cpu->upload(c->x);
    for (bool with_bias : {false, true}) {
      Tensor oc = cpu->alloc({N, M}, DType::F32);
      cpu->linear(xc, wc, with_bias ? cpu->upload(HostTensor{{M}, c->bias}) : Tensor(), oc);
      (with_bias ? c->ref_bias : c->ref) = cpu->to_host_f32(oc);
    }
    return *c;
  }
  // Whether `path` runs x [N, K] @ w^T into a [N, M] output of `dt` (with a bias or not).
  bool runs(Fp8Path path, const Tensor& w, int64_t N, int64_t K, bool bias, DType dt) {
    const Tensor x = gpu->alloc({N, K}, DType::BF16), o = gpu->alloc({N, w.dim(0)}, dt);
    const Tensor b = bias ? gpu->alloc({w.dim(0)}, dt) : Tensor();
    return cuda_fp8_gemm(*gpu).can_run(path, x, w, b, o);
  }
  // GTEST_SKIP's reason when `path` ran nowhere; a printed list where it missed some cases.
  static std::string unavailable(Fp8Path p, const std::vector<std::string>& missed) {
    std::string s = std::string("path ") + cuda_host::fp8_path_name(p) + " unavailable on this GPU";
    if (p == Fp8Path::LtOuter)
      s += " (cuBLASLt offers no FP8 algorithm with outer-vector scales here)";
    if (p == Fp8Path::LtEpilogue)
      s += " (cuBLASLt offers no FP8 algorithm with scalar scales here)";
    s += " for " + std::to_string(missed.size()) + " cases, e.g. " + missed.front();
    return s;
  }
};

std::string case_name(int64_t N, int64_t M, int64_t K, bool bias, DType dt) {
  return "N " + std::to_string(N) + " M " + std::to_string(M) + " K " + std::to_string(K) +
         (bias ? " bias " : " ") + std::string(dtype_name(dt));
}

// The rule's choice at N: the GEMV up to gemv_max_rows(), then the first cuBLASLt path that
// runs, else the GEMV.
Fp8Path expected_rule(Fp8Path rule_of_big, int64_t N, int gemv_max) {
  return N <= gemv_max ? Fp8Path::Gemv : rule_of_big;
}

TEST_P(CudaFp8Path, MatchesTheCpuOverShapesRowsBiasAndOutputTypes) {
  const Fp8Path path = GetParam();
  std::vector<std::string> missed;
  int ran = 0;
  for (auto [M, K] :
       std::vector<std::pair<int64_t, int64_t>>{{1536, 576}, {576, 1536}, {512, 4096}}) {
    for (int64_t N : {1, 3, 16, 64, 300, 2048}) {
      const RefCase& c = ref_case(M, K, N);
      const Tensor wg = gpu->upload_fp8_linear(c.q), xg = gpu->upload(c.x);
      for (bool with_bias : {false, true}) {
        for (DType dt : {DType::BF16, DType::F32}) {
          const std::string name = case_name(N, M, K, with_bias, dt);
          SCOPED_TRACE(name + " " + cuda_host::fp8_path_name(path));
          const Tensor b = with_bias ? upload_as(HostTensor{{M}, c.bias}, dt) : Tensor();
          Tensor og =
              upload_as(HostTensor{{N, M}, std::vector<float>(size_t(N * M), std::nanf(""))}, dt);
          auto& fp8 = cuda_fp8_gemm(*gpu);
          if (path == Fp8Path::Auto) {
            Fp8Path big = Fp8Path::Gemv;
            for (Fp8Path p : {Fp8Path::LtOuter, Fp8Path::LtEpilogue})
              if (big == Fp8Path::Gemv && fp8.can_run(p, xg, wg, b, og)) big = p;
            const Fp8Path rule = fp8.chosen(xg, wg, b, og);
            EXPECT_EQ(rule, expected_rule(big, N, fp8.gemv_max_rows()));
            std::printf("fp8 rule at %s: %s\n", name.c_str(), cuda_host::fp8_path_name(rule));
          }
          if (!fp8.can_run(path, xg, wg, b, og)) {
            missed.push_back(name);
            continue;
          }
          ++ran;
          EXPECT_NO_THROW(fp8.linear(xg, wg, b, og, path));
          const std::vector<float> got = gpu->to_host_f32(og);
          const std::vector<float>& want = with_bias ? c.ref_bias : c.ref;
          const double e = rel_error(got, want);
          EXPECT_LE(e, dt == DType::BF16 ? kBf16OutTol : kF32OutTol);
          std::printf("fp8 linear %s %-11s rel err %.2e\n", name.c_str(),
                      cuda_host::fp8_path_name(path), e);
          int zero_row_bad = 0;  // row 0 is all zero: exactly the bias (in out's type), or 0
          for (int64_t m = 0; m < M; ++m)
            zero_row_bad += got[size_t(m)] != (with_bias ? c.bias[size_t(m)] : 0.0f);
          EXPECT_EQ(zero_row_bad, 0)
              << "first bad: " << got[0] << " vs " << (with_bias ? c.bias[0] : 0.0f);
        }
      }
    }
  }
  if (ran == 0) GTEST_SKIP() << unavailable(path, missed);
  if (!missed.empty()) std::printf("%s\n", unavailable(path, missed).c_str());
}

// A static scale half the largest row's dynamic one: that row's largest values saturate at 448
// on both backends alike.
TEST_P(CudaFp8Path, StaticInputScaleSaturatesAsTheCpu) {
  const Fp8Path path = GetParam();
  const int64_t M = 512, K = 576;
  std::vector<std::string> missed;
  for (int64_t N : {3, 64, 300}) {
    const HostTensor x = graded(rng, N, K);
    float amax = 0;
    for (float v : x.data) amax = std::max(amax, std::fabs(v));
    const Weight w = weight(M, K, 0.5f * amax / kE4M3Max);
    if (!runs(path, w.gpu, N, K, false, DType::BF16)) {
      missed.push_back(case_name(N, M, K, false, DType::BF16));
      continue;
    }
    const double e = compare(x, w, {}, DType::BF16, path);
    EXPECT_LE(e, kBf16OutTol) << "N " << N << " " << cuda_host::fp8_path_name(path);
    std::printf("fp8 static scale N %ld %-11s rel err %.2e\n", long(N),
                cuda_host::fp8_path_name(path), e);
  }
  if (missed.size() == 3) GTEST_SKIP() << unavailable(path, missed);
}

// More rows than one chunk of the scratch: K = 16384 gives chunks of 2048 rows (the last of 52).
TEST_P(CudaFp8Path, RowsBeyondOneScratchChunk) {
  const Fp8Path path = GetParam();
  const int64_t K = 16384, M = 64, N = 2100;
  ASSERT_EQ(cuda_host::Fp8Gemm::chunk_rows(K), 2048);
  const Weight w = weight(M, K);
  if (!runs(path, w.gpu, N, K, false, DType::BF16))
    GTEST_SKIP() << unavailable(path, {case_name(N, M, K, false, DType::BF16)});
  const HostTensor x = graded(rng, N, K);
  const double e = compare(x, w, {}, DType::BF16, path);
  EXPECT_LE(e, kBf16OutTol);
  std::printf("fp8 two chunks %-11s rel err %.2e\n", cuda_host::fp8_path_name(path), e);
}

// The quantiser, the product and (lt-epilogue) the epilogue inside a CUDA graph: no host
// synchronisation, no allocation; a replay after new inputs are copied in gives the eager
// result of those inputs bit for bit, with a bias, at a GEMV row count and two larger ones.
TEST_P(CudaFp8Path, GraphReplayEqualsEager) {
  const Fp8Path path = GetParam();
  const int64_t M = 1024, K = 1536;
  const Weight w = weight(M, K);
  const Tensor bias = gpu->upload(HostTensor{{M}, random_vec(rng, size_t(M), 0.5f)});
  auto& fp8 = cuda_fp8_gemm(*gpu);
  std::vector<std::string> missed;
  for (int64_t N : {2, 64, 300}) {
    SCOPED_TRACE("N " + std::to_string(N));
    if (!runs(path, w.gpu, N, K, true, DType::BF16)) {
      missed.push_back(case_name(N, M, K, true, DType::BF16));
      continue;
    }
    const HostTensor x1 = graded(rng, N, K), x2 = graded(rng, N, K);
    Tensor xg = gpu->upload(x1), og = gpu->alloc({N, M}, DType::BF16);
    fp8.linear(xg, w.gpu, bias, og, path);  // eager first (as the model does before capturing)
    const int key = 9000 + int(N) * 8 + int(path);
    gpu->begin_capture();
    fp8.linear(xg, w.gpu, bias, og, path);
    gpu->end_capture(key);
    Tensor eager = gpu->alloc({N, M}, DType::BF16);
    for (const HostTensor* x : {&x1, &x2}) {
      const Tensor xin = gpu->upload(*x);
      gpu->copy_rows(xin, xg);
      gpu->replay(key);
      fp8.linear(xin, w.gpu, bias, eager, path);
      const std::vector<float> g = gpu->to_host_f32(og), e = gpu->to_host_f32(eager);
      size_t bad = 0;
      for (size_t i = 0; i < g.size(); ++i) bad += !(g[i] == e[i]);
      EXPECT_EQ(bad, 0u) << "of " << g.size() << "; first: replay " << g[0] << ", eager " << e[0];
    }
  }
  if (missed.size() == 3) GTEST_SKIP() << unavailable(path, missed);
}

INSTANTIATE_TEST_SUITE_P(Paths, CudaFp8Path,
                         ::testing::Values(Fp8Path::Auto, Fp8Path::Gemv, Fp8Path::LtOuter,
                                           Fp8Path::LtEpilogue),
                         [](const ::testing::TestParamInfo<Fp8Path>& i) {
                           switch (i.param) {
                             case Fp8Path::Auto:
                               return std::string("Auto");
                             case Fp8Path::Gemv:
                               return std::string("Gemv");
                             case Fp8Path::LtOuter:
                               return std::string("LtOuter");
                             case Fp8Path::LtEpilogue:
                               return std::string("LtEpilogue");
                           }
                           return std::string("Unknown");
                         });

// K = 100, M = 50 (not multiples of 16): cuBLASLt's FP8 GEMM cannot run them; the rule takes
// the GEMV (byte loads) at every N, and forcing a cuBLASLt path is an error.
TEST_F(CudaFp8Linear, ShapesCublasLtCannotTakeRunTheGemv) {
  const Weight w = weight(50, 100);
  auto& fp8 = cuda_fp8_gemm(*gpu);
  for (int64_t N : {1, 9, 64}) {
    const HostTensor x = graded(rng, N, 100);
    Tensor xg = gpu->upload(x), og = gpu->alloc({N, 50}, DType::BF16);
    EXPECT_EQ(fp8.chosen(xg, w.gpu, Tensor(), og), Fp8Path::Gemv);
    EXPECT_LE(compare(x, w, {}, DType::BF16, Fp8Path::Auto), kBf16OutTol) << "N " << N;
    for (Fp8Path p : {Fp8Path::LtOuter, Fp8Path::LtEpilogue}) {
      EXPECT_FALSE(fp8.can_run(p, xg, w.gpu, Tensor(), og)) << cuda_host::fp8_path_name(p);
      EXPECT_THROW(fp8.linear(xg, w.gpu, Tensor(), og, p), Error) << cuda_host::fp8_path_name(p);
    }
  }
}

// The epilogue kernel alone against the host: out = (sum * s_x[n]) * s_w[m] + bias, the sums
// being whatever out held (here random bf16 values), the row scales the quantiser's.
TEST_F(CudaFp8Linear, EpilogueRescalesInPlaceAsTheContractSays) {
  const int64_t M = 1024, K = 576, N = 37;
  const Weight w = weight(M, K);
  const HostTensor x = graded(rng, N, K);
  std::vector<uint8_t> codes;
  std::vector<float> s_x;
  auto& fp8 = cuda_fp8_gemm(*gpu);
  fp8.quantize_for_test(gpu->upload(x), w.gpu, &codes, &s_x);  // leaves s_x in the scratch
  const std::vector<float> sums = random_vec(rng, size_t(N * M), 100.0f);
  const std::vector<float> bias = random_vec(rng, size_t(M), 0.5f);
  for (DType dt : {DType::BF16, DType::F32}) {
    SCOPED_TRACE(std::string(dtype_name(dt)));
    Tensor out = upload_as(HostTensor{{N, M}, sums}, dt);
    fp8.epilogue_only(w.gpu, upload_as(HostTensor{{M}, bias}, dt), out);
    const std::vector<float> got = gpu->to_host_f32(out);
    int bad = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t m = 0; m < M; ++m) {
        float want =
            sums[size_t(n * M + m)] * s_x[size_t(n)] * w.q.scales[size_t(m)] + bias[size_t(m)];
        if (dt == DType::BF16) want = round_bf16(want);
        if (got[size_t(n * M + m)] != want && ++bad <= 3)
          ADD_FAILURE() << "out[" << n << ", " << m << "] = " << got[size_t(n * M + m)] << ", want "
                        << want;
      }
    EXPECT_EQ(bad, 0);
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

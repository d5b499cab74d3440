// The CUDA backend's GEMM candidates (cuda_gemm.h, gemm_candidates.h, gemv_kernels.h): every
// candidate of a shape (cuBLASLt's heuristic algorithms, their split-K variants, the GEMV kernel)
// against a float64 host reference and against the heuristic's pick, with and without bias, bf16
// and float32 output; the tuner's pick after linear(); and no tuning inside a graph capture.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "backend/cuda/cuda_gemm.h"
#include "gpu_test_util.h"

namespace nc::testing {
namespace {

struct GemmCase {
  int64_t n, k, m;
  bool bias, f32_out;
};

// out[i, j] = sum_k x[i, k] w[j, k] + bias[j], in float64 over the bf16-rounded inputs.
std::vector<float> reference(const GemmCase& c, const std::vector<float>& x,
                             const std::vector<float>& w, const std::vector<float>& b) {
  std::vector<float> out(size_t(c.n * c.m));
  for (int64_t i = 0; i < c.n; ++i)
    for (int64_t j = 0; j < c.m; ++j) {
      double s = c.bias ? double(b[size_t(j)]) : 0.0;
      for (int64_t k = 0; k < c.k; ++k)
        s += double(x[size_t(i * c.k + k)]) * w[size_t(j * c.k + k)];
      out[size_t(i * c.m + j)] = float(s);
    }
  return out;
}

class CudaGemmChoice : public ::testing::Test {
 protected:
  // A fresh tuning-cache folder per test (the file is read when a backend first tunes).
  void SetUp() override {
    cache_dir = (std::filesystem::temp_directory_path() /
                 ("nc_gemm_cache_" + std::to_string(::getpid()) + "_" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                    .string();
    std::filesystem::remove_all(cache_dir);
    setenv("NC_GEMM_CACHE", cache_dir.c_str(), 1);
    setenv("NC_GEMM_TUNE", "1", 1);  // tuning is opt-in (cuda_gemm.h)
    gpu = make_cuda_backend(0);
  }
  void TearDown() override {
    gpu.reset();
    unsetenv("NC_GEMM_CACHE");
    unsetenv("NC_GEMM_TUNE");
    std::filesystem::remove_all(cache_dir);
  }

  std::string cache_dir;
  std::unique_ptr<Backend> gpu;
  std::mt19937 rng{41};

  struct Operands {
    std::vector<float> x, w, b, ref;
    Tensor xg, wg, bg, out;
  };

  Operands make(const GemmCase& c) {
    Operands o;
    o.x = random_vec(rng, size_t(c.n * c.k));
    o.w = random_vec(rng, size_t(c.m * c.k), 0.05f);
    if (c.bias) o.b = random_vec(rng, size_t(c.m));
    o.ref = reference(c, o.x, o.w, o.b);
    o.xg = gpu->upload(HostTensor{{c.n, c.k}, o.x});
    o.wg = gpu->upload(HostTensor{{c.m, c.k}, o.w});
    const DType out_t = c.f32_out ? DType::F32 : DType::BF16;
    if (c.bias) {
      o.bg = gpu->alloc({c.m}, out_t);
      fill(o.bg, o.b);
    }
    o.out = gpu->alloc({c.n, c.m}, out_t);
    return o;
  }

  // Tolerance: bf16 output rounding; float32 output only differs in summation order.
  static double tol(const GemmCase& c) { return c.f32_out ? 1e-4 : kBf16Tol; }

  // Host values into a bf16 or float32 device tensor (copy_from_host copies raw bytes).
  void fill(const Tensor& t, const std::vector<float>& v) {
    if (t.dtype() == DType::F32) return gpu->copy_from_host(t, v.data());
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
    gpu->copy_from_host(t, h.data());
  }

  void clear(const Tensor& t) { fill(t, std::vector<float>(size_t(t.numel()), std::nanf(""))); }
};

std::string label(const GemmCase& c) {
  return std::to_string(c.n) + "x" + std::to_string(c.k) + "x" + std::to_string(c.m) +
         (c.bias ? " bias" : "") + (c.f32_out ? " f32" : " bf16");
}

const GemmCase kCases[] = {
    {1, 1024, 2048, false, false},
    {1, 1024, 1000, true, false},
    {3, 2048, 1024, false, true},
    {8, 1024, 3072, true, true},
    {16, 1024, 3072, false, false},
    {5, 64, 4096, true, false},
    {17, 576, 1536, true, false},
    {64, 1024, 2048, false, false},
    {1, 576, 1541, false, true},
    // GEMV with 8 warps per row (long K, few output rows), M not a multiple of anything.
    {2, 8192, 520, true, false}};

TEST_F(CudaGemmChoice, EveryCandidateMatchesReferenceAndHeuristic) {
  cuda_host::CublasLtGemm& gemm = cuda_host::cuda_gemm(*gpu);
  for (const GemmCase& c : kCases) {
    Operands o = make(c);
    const std::vector<std::string> names = gemm.candidate_names(o.xg, o.wg, o.bg, o.out);
    ASSERT_FALSE(names.empty()) << label(c);
    // The GEMV kernel is offered exactly where its contract allows it (aligned fresh buffers).
    const bool has_gemv = std::find(names.begin(), names.end(), "gemv") != names.end();
    EXPECT_EQ(has_gemv, c.n <= 16 && c.k % 8 == 0) << label(c);
    std::vector<float> heuristic;
    for (size_t i = 0; i < names.size(); ++i) {
      clear(o.out);
      gemm.run_candidate(i, o.xg, o.wg, o.bg, o.out);
      const std::vector<float> got = gpu->to_host_f32(o.out);
      EXPECT_LE(rel_error(got, o.ref), tol(c)) << label(c) << " " << names[i];
      if (i == 0) heuristic = got;
      EXPECT_LE(rel_error(got, heuristic), tol(c)) << label(c) << " " << names[i] << " vs lt#0";
    }
  }
}

TEST_F(CudaGemmChoice, LinearTunesAtFirstUseAndMatches) {
  cuda_host::CublasLtGemm& gemm = cuda_host::cuda_gemm(*gpu);
  for (const GemmCase& c : kCases) {
    Operands o = make(c);
    clear(o.out);
    gpu->linear(o.xg, o.wg, o.bg, o.out);
    EXPECT_LE(rel_error(gpu->to_host_f32(o.out), o.ref), tol(c)) << label(c);
    const int pick = gemm.chosen(o.xg, o.wg, o.bg, o.out);
    const size_t n = gemm.candidate_names(o.xg, o.wg, o.bg, o.out).size();
    EXPECT_GE(pick, 0) << label(c);
    EXPECT_LT(size_t(pick), n) << label(c);
    // A second call keeps the choice.
    gpu->linear(o.xg, o.wg, o.bg, o.out);
    EXPECT_EQ(gemm.chosen(o.xg, o.wg, o.bg, o.out), pick) << label(c);
  }
}

TEST_F(CudaGemmChoice, NoTuningDuringGraphCapture) {
  ASSERT_TRUE(gpu->supports_graphs());
  cuda_host::CublasLtGemm& gemm = cuda_host::cuda_gemm(*gpu);
  const GemmCase c{4, 1024, 2048, true, false};
  Operands o = make(c);
  clear(o.out);
  cuda_synchronize(*gpu);
  gpu->begin_capture();
  gpu->linear(o.xg, o.wg, o.bg, o.out);
  gpu->end_capture(3);
  EXPECT_EQ(gemm.chosen(o.xg, o.wg, o.bg, o.out), -1) << "tuned inside a capture";
  gpu->replay(3);
  EXPECT_LE(rel_error(gpu->to_host_f32(o.out), o.ref), tol(c));
  // The next eager call tunes.
  gpu->linear(o.xg, o.wg, o.bg, o.out);
  EXPECT_GE(gemm.chosen(o.xg, o.wg, o.bg, o.out), 0);
  EXPECT_LE(rel_error(gpu->to_host_f32(o.out), o.ref), tol(c));
}

TEST_F(CudaGemmChoice, CacheFileRestoresTheChoice) {
  const GemmCase c{2, 1024, 3072, false, false};
  Operands o = make(c);
  gpu->linear(o.xg, o.wg, o.bg, o.out);
  const int pick = cuda_host::cuda_gemm(*gpu).chosen(o.xg, o.wg, o.bg, o.out);
  ASSERT_GE(pick, 0);
  // One line per tuned row bucket in the folder's one file: the key, a tab, the configuration.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(cache_dir)) {
    ++files;
    std::ifstream in(e.path());
    std::string line, text;
    while (std::getline(in, line)) text += line + "\n";
    EXPECT_NE(text.find("rows<=2 m=3072 k=1024"), std::string::npos) << text;
    EXPECT_TRUE(text.find("\tlt id=") != std::string::npos ||
                text.find("\tgemv\n") != std::string::npos)
        << text;
  }
  EXPECT_EQ(files, 1);
  // A fresh backend has the choice before any timing: chosen() is set at plan time.
  auto again = make_cuda_backend(0);
  Tensor x = again->upload(HostTensor{{c.n, c.k}, o.x});
  Tensor w = again->upload(HostTensor{{c.m, c.k}, o.w});
  Tensor out = again->alloc({c.n, c.m}, DType::BF16);
  EXPECT_EQ(cuda_host::cuda_gemm(*again).chosen(x, w, Tensor(), out), pick);
  again->linear(x, w, Tensor(), out);
  EXPECT_LE(rel_error(again->to_host_f32(out), o.ref), kBf16Tol);
}

TEST_F(CudaGemmChoice, RowBucketReusesTheChoice) {
  // Rows 5 tune the bucket rows <= 8; rows 6, 7 and 8 then have a choice at plan time, and it
  // computes the right values.
  cuda_host::CublasLtGemm& gemm = cuda_host::cuda_gemm(*gpu);
  Operands first = make({5, 2048, 1024, true, false});
  gpu->linear(first.xg, first.wg, first.bg, first.out);
  ASSERT_GE(gemm.chosen(first.xg, first.wg, first.bg, first.out), 0);
  for (int64_t n : {6, 7, 8}) {
    const GemmCase c{n, 2048, 1024, true, false};
    Operands o = make(c);
    EXPECT_GE(gemm.chosen(o.xg, o.wg, o.bg, o.out), 0) << n;
    clear(o.out);
    gpu->linear(o.xg, o.wg, o.bg, o.out);
    EXPECT_LE(rel_error(gpu->to_host_f32(o.out), o.ref), tol(c)) << n;
  }
  // Rows 9 are another bucket: not tuned until used.
  Operands other = make({9, 2048, 1024, true, false});
  EXPECT_EQ(gemm.chosen(other.xg, other.wg, other.bg, other.out), -1);
}

TEST_F(CudaGemmChoice, CorruptCacheLineFallsBackToHeuristic) {
  const GemmCase c{2, 1024, 3072, false, false};
  Operands o = make(c);
  gpu->linear(o.xg, o.wg, o.bg, o.out);  // writes the file
  std::string path;
  for (const auto& e : std::filesystem::directory_iterator(cache_dir)) path = e.path().string();
  ASSERT_FALSE(path.empty());
  std::string key;
  {
    std::ifstream in(path);
    std::getline(in, key);
  }
  key = key.substr(0, key.find('\t'));
  std::ofstream(path, std::ios::app) << key << "\tlt id=12 tile=x\n";  // the later line wins
  auto again = make_cuda_backend(0);
  Tensor x = again->upload(HostTensor{{c.n, c.k}, o.x});
  Tensor w = again->upload(HostTensor{{c.m, c.k}, o.w});
  Tensor out = again->alloc({c.n, c.m}, DType::BF16);
  EXPECT_EQ(cuda_host::cuda_gemm(*again).chosen(x, w, Tensor(), out), 0);
  again->linear(x, w, Tensor(), out);
  EXPECT_LE(rel_error(again->to_host_f32(out), o.ref), kBf16Tol);
}

TEST_F(CudaGemmChoice, TuningOffKeepsHeuristic) {
  // With NC_GEMM_TUNE=0 (read when the backend is made) a plan lists the heuristic's pick only.
  setenv("NC_GEMM_TUNE", "0", 1);
  auto plain = make_cuda_backend(0);
  setenv("NC_GEMM_TUNE", "1", 1);
  const GemmCase c{2, 1024, 2048, false, false};
  Operands o = make(c);
  Tensor x = plain->upload(HostTensor{{c.n, c.k}, o.x});
  Tensor w = plain->upload(HostTensor{{c.m, c.k}, o.w});
  Tensor out = plain->alloc({c.n, c.m}, DType::BF16);
  cuda_host::CublasLtGemm& gemm = cuda_host::cuda_gemm(*plain);
  EXPECT_EQ(gemm.candidate_names(x, w, Tensor(), out).size(), 1u);
  plain->linear(x, w, Tensor(), out);
  EXPECT_EQ(gemm.chosen(x, w, Tensor(), out), 0);
  EXPECT_LE(rel_error(plain->to_host_f32(out), o.ref), kBf16Tol);
}

// Untuned (the default), a one-row product runs the GEMV kernel (measured faster than cuBLASLt's
// pick for nine of the ten decode projections of both benchmark shapes at one row, H200).
TEST_F(CudaGemmChoice, UntunedOneRowTakesTheGemv) {
  setenv("NC_GEMM_TUNE", "0", 1);
  auto plain = make_cuda_backend(0);
  setenv("NC_GEMM_TUNE", "1", 1);
  for (const int64_t rows : {1, 2}) {
    const GemmCase c{rows, 1024, 2048, false, false};
    Operands o = make(c);
    Tensor x = plain->upload(HostTensor{{c.n, c.k}, o.x});
    Tensor w = plain->upload(HostTensor{{c.m, c.k}, o.w});
    Tensor out = plain->alloc({c.n, c.m}, DType::BF16);
    cuda_host::CublasLtGemm& gemm = cuda_host::cuda_gemm(*plain);
    const std::vector<std::string> names = gemm.candidate_names(x, w, Tensor(), out);
    ASSERT_EQ(names.size(), 1u);
    EXPECT_EQ(names[0] == "gemv", rows == 1) << names[0];
    plain->linear(x, w, Tensor(), out);
    EXPECT_LE(rel_error(plain->to_host_f32(out), o.ref), kBf16Tol);
  }
}

}  // namespace
}  // namespace nc::testing

// The float-activation kernel tables of every path this CPU has (quant_fdot.h), called directly:
// decoded rows equal formats/gguf.h's dequantize() bit for bit, and the direct kernel (weights
// decoded in registers) equals the gemm over decoded rows bit for bit, for every format.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/cpu_isa.h"
#include "backend/cpu/quant_fdot.h"
#include "cpu_quant_util.h"

namespace nc {
namespace {

constexpr DType kBlockDTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q8_0,
                                  DType::Q4_K, DType::Q5_K, DType::Q6_K};
static_assert(std::size(kBlockDTypes) == qk::kNumBlockFormats);  // in BlockFormat's order

struct Table {
  CpuIsa isa;
  qk::FloatActKernels k;
};

// The tables as cpu_matmul builds them, for the paths this CPU supports.
std::vector<Table> tables() {
  std::vector<Table> out = {{CpuIsa::Portable, qk::kPortableFloatKernels}};
  qk::FloatActKernels k = qk::kPortableFloatKernels;
  if (cpu_isa_supported(CpuIsa::Avx2)) {
    qk::use_avx2_float_kernels(&k);
    out.push_back({CpuIsa::Avx2, k});
  }
  if (cpu_isa_supported(CpuIsa::Avx512)) {
    qk::use_avx512_float_kernels(&k);
    out.push_back({CpuIsa::Avx512, k});
  }
  return out;
}

TEST(CpuFloatAct, DecodedRowsAreDequantizeBitForBit) {
  std::mt19937 rng(7);
  for (const Table& tb : tables())
    for (int f = 0; f < qk::kNumBlockFormats; ++f) {
      const DType t = kBlockDTypes[f];
      const int64_t M = 3, K = 768;
      const std::vector<uint8_t> w = test::random_weights(t, M, K, rng);
      const std::vector<float> want = test::dequantized(t, w, M * K);
      std::vector<float> got(static_cast<size_t>(K));
      for (int64_t r = 0; r < M; ++r) {
        tb.k.decode[f](w.data() + r * int64_t(dtype_bytes(t, K)), K, got.data());
        EXPECT_EQ(0, std::memcmp(got.data(), want.data() + r * K, size_t(K) * 4))
            << dtype_name(t) << " " << cpu_isa_name(tb.isa) << " row " << r;
      }
    }
}

TEST(CpuFloatAct, DirectKernelEqualsGemmOfDecodedRows) {
  std::mt19937 rng(9);
  int checked = 0;
  for (const Table& tb : tables()) {
    if (tb.k.direct_rows == 0) continue;  // the portable path has none
    for (int f = 0; f < qk::kNumBlockFormats; ++f) {
      const DType t = kBlockDTypes[f];
      const int rows = tb.k.direct_rows;
      const int64_t K = 1024, row_bytes = int64_t(dtype_bytes(t, K));
      const std::vector<uint8_t> w = test::random_weights(t, rows, K, rng);
      const std::vector<float> x = test::random_x(K, rng);
      std::vector<float> decoded(static_cast<size_t>(rows * K));
      std::vector<float> direct(static_cast<size_t>(rows)), gemm(static_cast<size_t>(rows));
      for (int j = 0; j < rows; ++j)
        tb.k.decode[f](w.data() + j * row_bytes, K, decoded.data() + j * K);
      tb.k.direct[f](w.data(), row_bytes, x.data(), K, direct.data());
      tb.k.gemm(decoded.data(), K, rows, x.data(), K, 1, K, gemm.data(), 1);
      EXPECT_EQ(0, std::memcmp(direct.data(), gemm.data(), size_t(rows) * 4))
          << dtype_name(t) << " " << cpu_isa_name(tb.isa);
      ++checked;
    }
  }
  if (checked == 0) GTEST_SKIP() << "no vector path on this CPU: no direct kernels to check";
}

}  // namespace
}  // namespace nc

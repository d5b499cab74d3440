// Structured output on the GPU: Backend::apply_token_bitmask (the CUDA kernel) equals the CPU
// backend's op bit for bit, and the device sampler with a row's token bitmask draws only allowed
// ids, as the CPU backend's reference draw does (at SmolLM2's and Qwen3's vocabularies).
#include <cmath>
#include <random>

#include "backend/sampling_filter.h"
#include "gpu_test_util.h"

namespace nc::testing {
namespace {

using CudaTokenBitmask = GpuVsCpu;

std::vector<int32_t> random_words(std::mt19937& rng, size_t n, uint32_t keep_mask) {
  std::vector<int32_t> w(n);
  for (int32_t& x : w) x = int32_t(uint32_t(rng()) & (uint32_t(rng()) | keep_mask));
  return w;
}

bool allowed(const std::vector<int32_t>& words, int64_t row, int64_t W, int64_t id) {
  return (uint32_t(words[size_t(row * W + id / 32)]) >> (id % 32)) & 1u;
}

TEST_F(CudaTokenBitmask, KernelEqualsCpuOp) {
  for (int V : {49152, 151936, 1000}) {
    const int R = 37;
    const int W = (V + 31) / 32;
    const std::vector<float> x = random_vec(rng, size_t(R) * V, 3.0f);
    const std::vector<int32_t> words = random_words(rng, size_t(R) * W, 0);
    Tensor g = gpu->alloc({R, V}, DType::F32), c = cpu->alloc({R, V}, DType::F32);
    gpu->copy_from_host(g, x.data());
    cpu->copy_from_host(c, x.data());
    Tensor gm = gpu->alloc({R, W}, DType::I32), cm = cpu->alloc({R, W}, DType::I32);
    gpu->copy_from_host(gm, words.data());
    cpu->copy_from_host(cm, words.data());
    gpu->apply_token_bitmask(g, gm);
    cpu->apply_token_bitmask(c, cm);
    const std::vector<float> got = gpu->to_host_f32(g), want = cpu->to_host_f32(c);
    ASSERT_EQ(got.size(), want.size());
    int64_t diffs = 0, masked = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      diffs += !(got[i] == want[i]);
      masked += std::isinf(want[i]);
    }
    EXPECT_EQ(diffs, 0) << "V " << V;
    EXPECT_GT(masked, int64_t(R) * V / 2);  // about three quarters of the bits are clear
  }
}

TEST_F(CudaTokenBitmask, SamplerDrawsOnlyAllowedIds) {
  for (int V : {49152, 151936}) {
    const int R = 24, W = (V + 31) / 32;
    const std::vector<float> x = random_vec(rng, size_t(R) * V, 2.0f);
    Tensor g = gpu->alloc({R, V}, DType::F32), c = cpu->alloc({R, V}, DType::F32);
    gpu->copy_from_host(g, x.data());
    cpu->copy_from_host(c, x.data());
    // Few allowed ids per row (a grammar's usual mask); every third row has no mask.
    std::vector<int32_t> words(size_t(R) * W, 0);
    std::vector<RowSampling> rows(R);
    for (int r = 0; r < R; ++r) {
      rows[r].inv_temperature = r % 2 ? 0.0f : 1.0f;
      rows[r].seed = uint64_t(1000 + r);
      if (r % 4 == 1) rows[r].top_k = 5;
      if (r % 3 == 2) continue;
      for (int k = 0; k < 12; ++k) {
        const int64_t id = int64_t(rng() % uint32_t(V));
        words[size_t(r) * W + id / 32] |= int32_t(1u << (id % 32));
      }
      rows[r].token_bitmask.assign(words.begin() + r * W, words.begin() + (r + 1) * W);
    }
    const std::vector<int32_t> got = gpu->sample_tokens(g, rows);
    const std::vector<int32_t> ref = cpu->sample_tokens(c, rows);
    int same = 0;
    for (int r = 0; r < R; ++r) {
      if (!rows[r].token_bitmask.empty()) {
        EXPECT_TRUE(allowed(words, r, W, got[r])) << "V " << V << " row " << r;
        EXPECT_TRUE(allowed(words, r, W, ref[r])) << "V " << V << " row " << r;
      }
      same += got[r] == ref[r];
    }
    EXPECT_GE(same, R - 2) << "V " << V;  // same noise, same candidates (fast-math ties aside)
  }
}

}  // namespace
}  // namespace nc::testing

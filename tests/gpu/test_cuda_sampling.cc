// Device-side top-k / top-p / min-p sampling (FlashInfer's softmax and renormalisation kernels,
// then the Gumbel-max draw) against the host sampler's filter (filter_candidates) and the CPU
// backend's reference draw, at the vocabularies of SmolLM2 (49152) and Qwen3 (151936).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <span>

#include "core/error.h"
#include "core/random_init.h"
#include "engine/sampling.h"
#include "gpu_test_util.h"
#include "nanocascade/engine.h"
#include "sampling_check.h"

namespace nc::testing {
namespace {

using CudaSampling = GpuVsCpu;

std::vector<float> random_logits(std::mt19937& rng, size_t n, float scale) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

TEST_F(CudaSampling, TopKOneIsArgmax) {
  for (int V : {49152, 151936}) {
    const int R = 17;
    const std::vector<float> x = random_logits(rng, size_t(R) * V, 3.0f);
    Tensor t = gpu->alloc({R, V}, DType::F32);
    gpu->copy_from_host(t, x.data());
    std::vector<RowSampling> rows;
    for (int r = 0; r < R; ++r) rows.push_back(sampling_row(0.2f + 0.3f * float(r), mix64(r), 1));
    const std::vector<int32_t> got = gpu->sample_tokens(t, rows);
    for (int r = 0; r < R; ++r)
      EXPECT_EQ(got[r], argmax(std::span<const float>(x.data() + size_t(r) * V, V)))
          << "V " << V << " row " << r;
  }
}

// Mixed rows in one call (and 100 rows: two chunks of the filter's workspace): greedy rows are
// the argmax, every draw is one of the host's candidates, and nearly all match the CPU
// backend's draw (same noise, same candidates; fast-math logs may split a near-tie).
TEST_F(CudaSampling, DrawsAreHostCandidates) {
  for (int V : {49152, 151936}) {
    for (int R : {1, 9, 64, 100}) {
      std::vector<float> x = random_logits(rng, size_t(R) * V, 2.0f);
      // Masked ids (-inf) are never drawn.
      for (int r = 0; r < R; r += 4)
        for (int i = 0; i < 50; ++i) x[size_t(r) * V + mix64(r * 50 + i) % V] = -INFINITY;
      Tensor gt = gpu->alloc({R, V}, DType::F32), ct = cpu->alloc({R, V}, DType::F32);
      gpu->copy_from_host(gt, x.data());
      cpu->copy_from_host(ct, x.data());
      for (uint64_t salt : {11u, 12u}) {
        const std::vector<RowSampling> rows = mixed_rows(R, salt + uint64_t(R));
        const std::vector<int32_t> got = gpu->sample_tokens(gt, rows);
        const std::vector<int32_t> ref = cpu->sample_tokens(ct, rows);
        int same = 0, sampled = 0;
        for (int r = 0; r < R; ++r) {
          const std::span<const float> lr(x.data() + size_t(r) * V, V);
          if (rows[r].inv_temperature == 0) {
            EXPECT_EQ(got[r], argmax(lr)) << "V " << V << " row " << r;
            continue;
          }
          ++sampled;
          same += got[r] == ref[r];
          EXPECT_TRUE(contains(host_candidates(lr, rows[r]).ids, got[r]))
              << "V " << V << " R " << R << " row " << r << " token " << got[r];
        }
        EXPECT_GE(same, sampled - std::max(1, sampled / 20)) << "V " << V << " R " << R;
      }
    }
  }
}

// The same seeds give the same tokens, and a row's token does not depend on the other rows: its
// position, the batch size, the other rows' logits and parameters.
TEST_F(CudaSampling, SameSeedSameTokenWhateverTheBatch) {
  const int V = 151936, R = 64;
  const std::vector<float> x = random_logits(rng, size_t(R) * V, 2.0f);
  Tensor t = gpu->alloc({R, V}, DType::F32);
  gpu->copy_from_host(t, x.data());
  const std::vector<RowSampling> rows = mixed_rows(R, 5);
  const std::vector<int32_t> a = gpu->sample_tokens(t, rows);
  EXPECT_EQ(gpu->sample_tokens(t, rows), a);
  // The rows reversed into positions 35.. of a 100-row batch (so they span both chunks), the
  // others new random rows with other parameters.
  const int R2 = 100, at = 35;
  std::vector<float> y = random_logits(rng, size_t(R2) * V, 2.0f);
  std::vector<RowSampling> rows2 = mixed_rows(R2, 77);
  for (int r = 0; r < R; ++r) {
    const int to = at + (R - 1 - r);
    std::copy_n(x.data() + size_t(r) * V, V, y.data() + size_t(to) * V);
    rows2[to] = rows[r];
  }
  Tensor t2 = gpu->alloc({R2, V}, DType::F32);
  gpu->copy_from_host(t2, y.data());
  const std::vector<int32_t> b = gpu->sample_tokens(t2, rows2);
  for (int r = 0; r < R; ++r) EXPECT_EQ(b[at + (R - 1 - r)], a[r]) << "row " << r;
  // Alone.
  for (int r : {2, 3, 5, 6, 7}) {
    Tensor one = gpu->alloc({1, V}, DType::F32);
    gpu->copy_from_host(one, x.data() + size_t(r) * V);
    EXPECT_EQ(gpu->sample_tokens(one, {rows[r]})[0], a[r]) << "row " << r;
  }
}

// A filter that keeps every id (top-k = vocab) draws what the unfiltered path draws.
TEST_F(CudaSampling, NoOpFilterKeepsUnfilteredDraw) {
  const int V = 49152, R = 32;
  const std::vector<float> x = random_logits(rng, size_t(R) * V, 1.0f);
  Tensor t = gpu->alloc({R, V}, DType::F32);
  gpu->copy_from_host(t, x.data());
  std::vector<RowSampling> plain, noop;
  for (int r = 0; r < R; ++r) {
    plain.push_back(sampling_row(0.9f, mix64(r + 7)));
    noop.push_back(sampling_row(0.9f, mix64(r + 7), r % 2 ? V : V + 5));
  }
  EXPECT_EQ(gpu->sample_tokens(t, plain), gpu->sample_tokens(t, noop));
}

// Over 4000 seeds, a row with its probability on a few ids (large vocabulary, the rest at -30)
// is drawn with the host candidates' renormalised probabilities: no draw outside them, total
// variation < 0.04 and Pearson's chi-square below its 0.999 quantile.
TEST_F(CudaSampling, DrawFrequenciesMatchHostProbabilities) {
  const int N = 4000, V = 32768;
  std::vector<float> one(V, -30.0f);
  const float top[] = {2.0f, 1.7f, 1.5f, 1.2f, 1.0f, 0.5f, 0.0f, -0.5f};
  for (int i = 0; i < 8; ++i) one[mix64(i + 3) % V] = top[i];
  std::vector<float> x(size_t(N) * V);
  for (int i = 0; i < N; ++i) std::copy(one.begin(), one.end(), x.begin() + size_t(i) * V);
  Tensor t = gpu->alloc({N, V}, DType::F32);
  gpu->copy_from_host(t, x.data());
  expect_draws_follow_candidates(*gpu, t, one, N);
}

// Through the engine (random weights): requests with top-k / top-p / min-p are sampled on the
// device, and seeded ones give the same tokens run to run.
TEST_F(CudaSampling, EngineSamplesFiltersOnDevice) {
  const std::string path = small_qwen3_config_file("nc_gpu_sampling_qwen3.json", 2, 49152);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 9; ++i) {
    std::vector<int32_t> p(3 + 7 * i);
    for (size_t k = 0; k < p.size(); ++k) p[k] = int32_t(mix64(i * 100 + k) % 49152);
    prompts.push_back(p);
  }
  SamplingParams sp;
  sp.temperature = 0.8f;
  sp.top_k = 40;
  sp.top_p = 0.9f;
  sp.min_p = 0.02f;
  sp.seed = 99;
  sp.max_tokens = 12;
  sp.ignore_eos = true;
  auto run = [&] {
    Engine e(small_engine_config(path, 3));
    std::vector<std::vector<int32_t>> out;
    for (const auto& o : e.generate(prompts, sp)) out.push_back(o.token_ids);
    const EngineStats st = e.stats();
    EXPECT_EQ(st.num_device_sampled, st.num_generated_tokens);
    EXPECT_EQ(st.num_generated_tokens, int64_t(prompts.size()) * sp.max_tokens);
    return out;
  };
  EXPECT_EQ(run(), run());
}

TEST_F(CudaSampling, RejectsBadParameters) {
  Tensor t = gpu->alloc({1, 64}, DType::F32);
  std::vector<float> z(64, 0.0f);
  gpu->copy_from_host(t, z.data());
  EXPECT_THROW(gpu->sample_tokens(t, {sampling_row(1, 0, -1, 0.0f)}), Error);
  EXPECT_THROW(gpu->sample_tokens(t, {sampling_row(1, 0, -1, 1, 2.0f)}), Error);
  EXPECT_THROW(gpu->sample_tokens(t, {sampling_row(1, 0), sampling_row(1, 1)}), Error);
}

}  // namespace
}  // namespace nc::testing

// Log-probabilities and logit_bias computed on the device (cuda_logprobs.h) against the host
// reference (backend/logprobs.h's row_logprobs, and the CPU backend's draw with the bias), at
// SmolLM2's and Qwen3's vocabularies: the same top ids in the same order (ties by id), values
// within float32 rounding of the same logits, the drawn token's value from its raw logit.
#include <algorithm>
#include <cmath>
#include <span>

#include "backend/logprobs.h"
#include "core/random_init.h"
#include "gpu_test_util.h"
#include "sampling_check.h"

namespace nc::testing {
namespace {

using CudaLogprobs = GpuVsCpu;

std::vector<float> random_logits(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> normal(0.0f, 2.5f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// Both sides read the same float32 logits; the device sums exp in double in another order, so a
// value may differ from the host's in its last bits (a few ulps of the lse, ~1e-6 absolute).
constexpr float kTolerance = 2e-5f;

void expect_same(const RowLogprobs& got, const RowLogprobs& ref, const char* what, int r) {
  EXPECT_EQ(got.token, ref.token) << what << " row " << r;
  if (std::isinf(ref.logprob))
    EXPECT_EQ(got.logprob, ref.logprob) << what << " row " << r;
  else
    EXPECT_NEAR(got.logprob, ref.logprob, kTolerance) << what << " row " << r;
  ASSERT_EQ(got.top_ids, ref.top_ids) << what << " row " << r;
  for (size_t j = 0; j < ref.top_logprobs.size(); ++j)
    EXPECT_NEAR(got.top_logprobs[j], ref.top_logprobs[j], kTolerance) << what << " row " << r;
}

// Rows asking 0, 1, 5 and 20 entries, none, greedy and sampled, filtered or not, some biased
// (one bias forcing a token), ties among the largest logits, a row half -inf.
TEST_F(CudaLogprobs, MatchHostReference) {
  for (int V : {49152, 151936}) {
    const int R = 12;
    std::vector<float> x = random_logits(rng, size_t(R) * V);
    // Row 3: ties at the top (ids 7, 70 and 700 share the largest value).
    for (int id : {7, 70, 700}) x[size_t(3) * V + id] = 50.0f;
    // Row 5: the first half of its logits -inf.
    std::fill(x.begin() + 5 * V, x.begin() + 5 * V + V / 2, -INFINITY);
    std::vector<RowSampling> rows = mixed_rows(R, 97);
    const int ks[R] = {0, 1, 5, 20, -1, 3, 20, 2, 0, 7, -1, 20};
    for (int r = 0; r < R; ++r) rows[r].logprobs = ks[r];
    rows[2].bias = {{11, 100.0f}};               // forces 11: raw logprob of 11 reported
    rows[6].bias = {{5, -3.0f}, {V + 4, 2.0f}};  // an id outside the row is ignored
    rows[10].bias = {{42, 1000.0f}};             // biased, no logprobs asked
    rows[0].inv_temperature = 0;                 // greedy: the top entry
    Tensor gt = gpu->alloc({R, V}, DType::F32), ct = cpu->alloc({R, V}, DType::F32);
    gpu->copy_from_host(gt, x.data());
    cpu->copy_from_host(ct, x.data());
    auto pending = gpu->sample_tokens_async(gt, rows, gpu->alloc({R}, DType::I32));
    const std::vector<int32_t> ids = pending->wait();
    const std::vector<RowLogprobs> lps = pending->logprobs();
    ASSERT_EQ(lps.size(), size_t(R));
    const std::vector<int32_t> ref_ids = cpu->sample_tokens(ct, rows);
    EXPECT_EQ(ids[2], 11) << "V " << V;
    EXPECT_EQ(ids[10], 42) << "V " << V;
    int same = 0;
    for (int r = 0; r < R; ++r) {
      same += ids[r] == ref_ids[r];
      if (ks[r] < 0) {
        EXPECT_EQ(lps[r].token, -1) << "row " << r;
        continue;
      }
      const std::span<const float> row(x.data() + size_t(r) * V, size_t(V));
      expect_same(lps[r], row_logprobs(row, ids[r], ks[r]), V == 49152 ? "49152" : "151936", r);
    }
    // Row 3's ties come lowest id first.
    ASSERT_GE(lps[3].top_ids.size(), 3u);
    EXPECT_EQ(lps[3].top_ids[0], 7);
    EXPECT_EQ(lps[3].top_ids[1], 70);
    EXPECT_EQ(lps[3].top_ids[2], 700);
    // The bias goes into the draw as on the host (fast-math may split a near-tie of a sampled row).
    EXPECT_GE(same, R - 1) << "V " << V;
  }
}

// A greedy row's token is its top entry, whatever else shares the step; the same row gives the
// same numbers alone and in a batch.
TEST_F(CudaLogprobs, GreedyTokenIsTopEntryAndBatchInvariant) {
  const int V = 49152, R = 9;
  const std::vector<float> x = random_logits(rng, size_t(R) * V);
  std::vector<RowSampling> rows(R);
  for (int r = 0; r < R; ++r) rows[r].logprobs = 4, rows[r].seed = uint64_t(r);
  Tensor gt = gpu->alloc({R, V}, DType::F32);
  gpu->copy_from_host(gt, x.data());
  auto all = gpu->sample_tokens_async(gt, rows, gpu->alloc({R}, DType::I32));
  const std::vector<int32_t> ids = all->wait();
  const std::vector<RowLogprobs> lps = all->logprobs();
  Tensor one = gpu->alloc({1, V}, DType::F32);
  gpu->copy_from_host(one, x.data() + size_t(4) * V);
  auto alone = gpu->sample_tokens_async(one, {rows[4]}, gpu->alloc({1}, DType::I32));
  EXPECT_EQ(alone->wait()[0], ids[4]);
  const RowLogprobs a = alone->logprobs()[0];
  EXPECT_EQ(a.top_ids, lps[4].top_ids);
  EXPECT_EQ(a.top_logprobs, lps[4].top_logprobs);
  EXPECT_EQ(a.logprob, lps[4].logprob);
  for (int r = 0; r < R; ++r) {
    ASSERT_EQ(lps[r].top_ids.size(), 4u);
    EXPECT_EQ(lps[r].top_ids[0], ids[r]) << "row " << r;
    EXPECT_EQ(lps[r].logprob, lps[r].top_logprobs[0]) << "row " << r;
  }
}

// With a structured-output mask, the log-probabilities are still the raw logits' (the mask is
// applied after the top-k pass), and the drawn token is an allowed one.
TEST_F(CudaLogprobs, RawLogitsUnderTheMask) {
  const int V = 49152, R = 2;
  const std::vector<float> x = random_logits(rng, size_t(R) * V);
  std::vector<int32_t> mask(size_t((V + 31) / 32), 0);
  for (int id : {100, 2000, 30000}) mask[size_t(id / 32)] |= int32_t(1u << (id % 32));
  std::vector<RowSampling> rows(R);
  for (int r = 0; r < R; ++r) rows[r].logprobs = 5, rows[r].token_bitmask = mask;
  Tensor gt = gpu->alloc({R, V}, DType::F32);
  gpu->copy_from_host(gt, x.data());
  auto p = gpu->sample_tokens_async(gt, rows, gpu->alloc({R}, DType::I32));
  const std::vector<int32_t> ids = p->wait();
  const std::vector<RowLogprobs> lps = p->logprobs();
  for (int r = 0; r < R; ++r) {
    EXPECT_TRUE(ids[r] == 100 || ids[r] == 2000 || ids[r] == 30000) << ids[r];
    const std::span<const float> row(x.data() + size_t(r) * V, size_t(V));
    expect_same(lps[r], row_logprobs(row, ids[r], 5), "masked", r);
  }
}

}  // namespace
}  // namespace nc::testing

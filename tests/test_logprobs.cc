// Log-probabilities, logit_bias and n > 1: the numbers against a float32 log-softmax of the
// logits the sampler sees (the CPU backend's, and the fake model's exact references through the
// engine in each sampling mode), and the prompt of n choices computed once.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "backend/backend.h"
#include "backend/logprobs.h"
#include "core/error.h"
#include "fake_model.h"
#include "nanocascade/engine.h"

namespace nc {
namespace {

constexpr int kVocab = 300;

// torch.log_softmax in float32: x - max - log(sum(exp(x - max))).
std::vector<float> log_softmax_f32(const std::vector<float>& x) {
  const float mx = *std::max_element(x.begin(), x.end());
  float sum = 0;
  for (float v : x) sum += std::exp(v - mx);
  std::vector<float> out;
  for (float v : x) out.push_back(v - mx - std::log(sum));
  return out;
}

std::vector<float> random_logits(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-8, 8);
  std::vector<float> x(n);
  for (float& v : x) v = d(rng);
  return x;
}

// The top-k contract: sorted by decreasing log-probability (ties: lower id), the k largest.
void expect_top(const RowLogprobs& lp, const std::vector<float>& ref, int k) {
  ASSERT_EQ(int(lp.top_ids.size()), k);
  std::vector<int32_t> ids(ref.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i);
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return ref[a] > ref[b]; });
  for (int i = 0; i < k; ++i) {
    EXPECT_EQ(lp.top_ids[i], ids[i]) << "entry " << i;
    EXPECT_NEAR(lp.top_logprobs[i], ref[lp.top_ids[i]], 1e-4);
    if (i > 0) {
      EXPECT_GE(lp.top_logprobs[i - 1], lp.top_logprobs[i]);
    }
  }
}

TEST(Logprobs, RowEqualsFloat32LogSoftmax) {
  const std::vector<float> x = random_logits(5000, 1);
  const std::vector<float> ref = log_softmax_f32(x);
  const RowLogprobs lp = row_logprobs(x, 123, 20);
  EXPECT_EQ(lp.token, 123);
  EXPECT_NEAR(lp.logprob, ref[123], 1e-4);
  expect_top(lp, ref, 20);
  EXPECT_THROW(row_logprobs(x, 0, 21), Error);
  EXPECT_THROW(row_logprobs(x, 5000, 1), Error);
  // Ties go to the lower id; -inf stays -inf.
  const std::vector<float> t = {1, 3, 3, -INFINITY};
  const RowLogprobs lt = row_logprobs(t, 3, 3);
  EXPECT_EQ(lt.top_ids, (std::vector<int32_t>{1, 2, 0}));
  EXPECT_TRUE(std::isinf(lt.logprob) && lt.logprob < 0);
}

class BackendLogprobs : public ::testing::Test {
 protected:
  Tensor logits_tensor(const std::vector<float>& x, int64_t rows) {
    Tensor t = cpu->alloc({rows, int64_t(x.size()) / rows}, DType::F32);
    cpu->copy_from_host(t, x.data());
    return t;
  }
  std::unique_ptr<Backend> cpu = make_cpu_backend();
};

// Through the backend's draw: greedy rows' sampled token is the top entry; sampled rows give
// their own token's log-probability; rows that ask for none get none.
TEST_F(BackendLogprobs, SampledTokensCarryLogSoftmaxOfTheBackendLogits) {
  const int64_t R = 3, V = 1000;
  const std::vector<float> x = random_logits(size_t(R * V), 2);
  std::vector<RowSampling> rows(3);
  rows[0].logprobs = 5;  // greedy
  rows[1].inv_temperature = 1.0f, rows[1].seed = 9, rows[1].logprobs = 0;
  const Tensor t = logits_tensor(x, R);
  const std::vector<float> seen = cpu->to_host_f32(t);  // the logits the sampler sees
  auto pending = cpu->sample_tokens_async(t, rows, cpu->alloc({R}, DType::I32));
  const std::vector<int32_t> ids = pending->wait();
  const std::vector<RowLogprobs> lps = pending->logprobs();
  ASSERT_EQ(lps.size(), size_t(R));
  for (int64_t r = 0; r < 2; ++r) {
    const std::vector<float> ref =
        log_softmax_f32(std::vector<float>(seen.begin() + r * V, seen.begin() + (r + 1) * V));
    EXPECT_EQ(lps[r].token, ids[r]);
    EXPECT_NEAR(lps[r].logprob, ref[ids[r]], 1e-4);
    expect_top(lps[r], ref, rows[r].logprobs);
  }
  EXPECT_EQ(lps[0].top_ids[0], ids[0]);  // greedy: the sampled token is the top entry
  EXPECT_EQ(lps[2].token, -1);
}

TEST_F(BackendLogprobs, LogitBiasForcesAndForbids) {
  const int64_t V = 500;
  const std::vector<float> x = random_logits(size_t(V), 3);
  const int32_t best = int32_t(std::max_element(x.begin(), x.end()) - x.begin());
  const int32_t worst = int32_t(std::min_element(x.begin(), x.end()) - x.begin());
  for (float inv_t : {0.0f, 1.0f}) {
    RowSampling force, forbid;
    force.inv_temperature = forbid.inv_temperature = inv_t;
    force.bias = {{worst, 100.0f}};
    forbid.bias = {{best, -100.0f}};
    forbid.logprobs = 1;
    auto p = cpu->sample_tokens_async(logits_tensor(x, 1), {force}, cpu->alloc({1}, DType::I32));
    EXPECT_EQ(p->wait()[0], worst);
    p = cpu->sample_tokens_async(logits_tensor(x, 1), {forbid}, cpu->alloc({1}, DType::I32));
    EXPECT_NE(p->wait()[0], best);
    // Log-probabilities are of the raw logits: the biased token stays the top entry.
    EXPECT_EQ(p->logprobs()[0].top_ids[0], best);
  }
}

// ---- Through the engine, over the fake model whose logits are known exactly ----

enum class Mode { Host, Device, DeviceAsync };

class EngineLogprobs : public ::testing::TestWithParam<Mode> {
 protected:
  std::unique_ptr<Engine> engine(bool prefix_cache = true) {
    EngineConfig cfg;
    cfg.page_size = 16;
    cfg.kv_cache_memory = std::to_string(int64_t(4096) * 16 * 8);
    cfg.async_scheduling = GetParam() == Mode::DeviceAsync;
    cfg.enable_prefix_cache = prefix_cache;
    return std::make_unique<Engine>(
        cfg, std::make_unique<fake::FakeModel>(kVocab, 4096, GetParam() != Mode::Host),
        std::make_unique<fake::FakeCodec>());
  }
};

std::vector<int32_t> prompt_of(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((i * 37 + salt * 11 + 5) % 250);
  return p;
}

TEST_P(EngineLogprobs, OutputTokensMatchLogSoftmaxOfTheModelLogits) {
  auto e = engine();
  SamplingParams sp = fake::greedy_ignoring_eos(6);
  sp.logprobs = 4;
  SamplingParams sampled = sp;
  sampled.temperature = 0.8f, sampled.seed = 5, sampled.repetition_penalty = 1.3f;  // host draw
  const std::vector<int32_t> prompt = prompt_of(20, 1);
  for (const SamplingParams& p : {sp, sampled}) {
    const CompletionOutput out = e->generate(std::vector<std::vector<int32_t>>{prompt}, p)[0];
    ASSERT_EQ(out.logprobs.size(), out.token_ids.size());
    std::vector<int32_t> history = prompt;
    for (size_t i = 0; i < out.token_ids.size(); ++i) {
      const std::vector<float> ref = log_softmax_f32(fake::reference_logits(history, kVocab));
      const TokenLogprob& t = out.logprobs[i];
      EXPECT_EQ(t.token, out.token_ids[i]);
      EXPECT_NEAR(t.logprob, ref[t.token], 1e-4) << "token " << i;
      ASSERT_EQ(t.top.size(), 4u);
      for (size_t k = 0; k < t.top.size(); ++k) {
        EXPECT_NEAR(t.top[k].second, ref[t.top[k].first], 1e-4);
        if (k > 0) {
          EXPECT_GE(t.top[k - 1].second, t.top[k].second);
        }
      }
      if (p.temperature == 0) {
        EXPECT_EQ(t.top[0].first, t.token);  // greedy: the top entry
      }
      history.push_back(out.token_ids[i]);
    }
  }
}

TEST_P(EngineLogprobs, PromptLogprobsComputeTheWholePrompt) {
  auto e = engine();
  SamplingParams sp = fake::greedy_ignoring_eos(2);
  const std::vector<int32_t> prompt = prompt_of(40, 2);
  e->generate(std::vector<std::vector<int32_t>>{prompt}, sp);  // now cached
  sp.prompt_logprobs = 2;
  const int64_t before = e->stats().num_prompt_tokens_computed;
  const CompletionOutput out = e->generate(std::vector<std::vector<int32_t>>{prompt}, sp)[0];
  EXPECT_EQ(e->stats().num_prompt_tokens_computed - before, 40);  // no prefix-cache reuse
  ASSERT_EQ(out.prompt_logprobs.size(), prompt.size() - 1);
  for (size_t p = 0; p + 1 < prompt.size(); ++p) {
    const std::vector<int32_t> history(prompt.begin(), prompt.begin() + p + 1);
    const std::vector<float> ref = log_softmax_f32(fake::reference_logits(history, kVocab));
    EXPECT_EQ(out.prompt_logprobs[p].token, prompt[p + 1]);
    EXPECT_NEAR(out.prompt_logprobs[p].logprob, ref[prompt[p + 1]], 1e-4) << "position " << p;
    EXPECT_EQ(out.prompt_logprobs[p].top.size(), 2u);
  }
}

TEST_P(EngineLogprobs, NChoicesComputeThePromptOnce) {
  auto e = engine();
  const std::vector<int32_t> prompt = prompt_of(50, 3);
  SamplingParams sp;
  sp.temperature = 1.0f, sp.seed = 11, sp.max_tokens = 8, sp.ignore_eos = true;
  const EngineStats s0 = e->stats();
  const std::vector<RequestId> ids = e->add_requests(prompt, sp, 4);
  ASSERT_EQ(ids.size(), 4u);
  std::map<RequestId, CompletionOutput> outs;
  while (e->has_unfinished())
    for (const RequestOutput& o : e->step()) outs[o.id].append(o);
  const EngineStats s1 = e->stats();
  // The first computes 50 tokens; the others take 48 (three full pages) from the cache.
  EXPECT_EQ(s1.num_prompt_tokens_computed - s0.num_prompt_tokens_computed, 50 + 3 * 2);
  EXPECT_EQ(s1.cache.hit_tokens - s0.cache.hit_tokens, 3 * 48);
  std::set<std::vector<int32_t>> distinct;
  for (RequestId id : ids) {
    EXPECT_EQ(outs[id].token_ids.size(), 8u);
    distinct.insert(outs[id].token_ids);
  }
  EXPECT_GT(distinct.size(), 1u);  // seeds seed + i: not one choice four times
}

TEST_P(EngineLogprobs, LogitBiasThroughTheEngine) {
  auto e = engine();
  const std::vector<int32_t> prompt = prompt_of(10, 4);
  SamplingParams sp = fake::greedy_ignoring_eos(5);
  sp.logit_bias = {{42, 100.0f}};
  const CompletionOutput forced = e->generate(std::vector<std::vector<int32_t>>{prompt}, sp)[0];
  EXPECT_EQ(forced.token_ids, std::vector<int32_t>(5, 42));
  const std::vector<int32_t> plain =
      e->generate(std::vector<std::vector<int32_t>>{prompt}, fake::greedy_ignoring_eos(1))[0]
          .token_ids;
  sp.max_tokens = 1;
  sp.logit_bias = {{plain[0], -100.0f}};
  EXPECT_NE(e->generate(std::vector<std::vector<int32_t>>{prompt}, sp)[0].token_ids[0], plain[0]);
  // Bad input: an id outside the vocabulary, a bias outside [-100, 100].
  sp.logit_bias = {{kVocab, 1.0f}};
  EXPECT_THROW(e->add_request(prompt, sp), Error);
  sp.logit_bias = {{1, 100.5f}};
  EXPECT_THROW(e->add_request(prompt, sp), Error);
  sp.logit_bias = {};
  sp.logprobs = 21;
  EXPECT_THROW(e->add_request(prompt, sp), Error);
  EXPECT_FALSE(e->has_unfinished());
}

INSTANTIATE_TEST_SUITE_P(Modes, EngineLogprobs,
                         ::testing::Values(Mode::Host, Mode::Device, Mode::DeviceAsync),
                         [](const ::testing::TestParamInfo<Mode>& i) {
                           return std::string(i.param == Mode::Host     ? "host"
                                              : i.param == Mode::Device ? "device"
                                                                        : "device_async");
                         });

}  // namespace
}  // namespace nc

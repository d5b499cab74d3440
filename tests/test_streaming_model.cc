// The streaming window over the real decoder on the CPU, with tiny fixture models:
//   - the first step after an eviction equals a reference computed without the engine: the
//     model's own prefill of the prompt, then a hand-built cache of the sink page and the kept
//     pages whose keys are un-rotated from their old positions and rotated to the new ones with
//     the reference rope (cpu_rope over the model's tables), attended by the next token at its
//     position within the cache (tiny-llama: llama3 rope; tiny-phi3-longrope: longrope whose
//     tables carry an attention factor of ~1.6; tiny-gemma3: two layer kinds with their own
//     ropes and a sliding window), in both page layouts;
//   - a window at least the whole stream gives the dense engine's tokens and log-probabilities
//     exactly;
//   - a stream of thousands of tokens on a model of 256 positions holds at most sinks + window
//     pages + 1 pages at every step (the model refuses any position past its table).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "backend/backend.h"
#include "backend/cpu/cpu_ops.h"
#include "engine/sampling.h"
#include "engine/step_model.h"
#include "fake_model.h"
#include "golden.h"
#include "model/layer_kinds.h"
#include "model/llama.h"
#include "model/model_loader.h"
#include "model/rope.h"
#include "nanocascade/engine.h"

namespace nc {
namespace test_streaming_model {

constexpr int kPage = 4, kWindow = 8, kPrompt = 20;

std::string fixture(const std::string& name) {
  return testing::fixtures_dir() + "/" + name;
}

std::vector<int32_t> random_ids(int n, uint32_t seed, int vocab) {
  std::mt19937 rng(seed);
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int32_t& t : p) t = int32_t(rng() % uint32_t(vocab));
  return p;
}

SamplingParams greedy(int max_tokens, int logprobs = 5) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  p.logprobs = logprobs;
  return p;
}

EngineConfig streaming_config(int window, const std::string& layout = "NHD", int page = kPage) {
  EngineConfig cfg;
  cfg.page_size = page;
  cfg.kv_layout = layout;
  cfg.kv_cache_memory = "8MiB";
  cfg.streaming_window = window;
  cfg.streaming_sink_pages = 1;
  cfg.check_invariants = true;
  return cfg;
}

std::unique_ptr<Engine> engine_for(const std::string& model, const EngineConfig& cfg) {
  return std::make_unique<Engine>(cfg, make_llama_step_model(fixture(model), "cpu"),
                                  std::make_unique<fake::FakeCodec>());
}

std::vector<float> log_softmax(const std::vector<float>& x) {
  double m = x[0], sum = 0;
  for (float v : x) m = std::max(m, double(v));
  for (float v : x) sum += std::exp(double(v) - m);
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = float(double(x[i]) - m - std::log(sum));
  return out;
}

// The reference side: the model on its own CPU backend, with caches built by hand.
class Reference {
 public:
  explicit Reference(const std::string& name)
      : lm_(load_model(fixture(name))), model_(lm_.config, lm_.weights, *cpu_) {}

  const ModelConfig& config() const { return lm_.config; }
  KVCache cache(KVLayout layout) { return model_.make_kv_cache(16, kPage, layout); }

  // One causal entry of `ids` at positions start.. over `pages`; logits of the last row.
  std::vector<float> step(KVCache& kv, const std::vector<int32_t>& ids, int start,
                          const std::vector<int32_t>& pages) {
    ForwardInput in;
    in.token_ids = ids;
    for (size_t i = 0; i < ids.size(); ++i) in.positions.push_back(start + int(i));
    in.logit_rows = {int32_t(ids.size()) - 1};
    PagedKVBatch b;
    b.add(int(ids.size()), pages, start + int(ids.size()), kPage);
    in.attention.num_tokens = int(ids.size());
    in.attention.levels = {b};
    return model_.forward(in, kv);
  }

  // Copies page `src` of `a` into page `dst` of `b`, every layer; K re-rotated from position
  // `from` + slot to `to` + slot with the reference rope: un-rotated with the old position's
  // table entry (in double), then cpu_rope at the new one.
  void copy_page(const KVCache& a, int src, KVCache& b, int dst, int from, int to) {
    const KVCacheShape& kv = a.shape;
    const LayerKinds kinds = layer_kinds(lm_.config);
    const int D = kv.head_dim, half = D / 2;
    for (size_t l = 0; l < a.layers.size(); ++l) {
      const bool sliding = kinds.kinds[size_t(kinds.of_layer[l])].sliding;
      const HostTensor table = rope_cos_sin_table(lm_.config, lm_.config.max_position, sliding);
      const Tensor t(const_cast<float*>(table.data.data()), table.shape, DType::F32);
      const float* pa = a.layers[l].ptr<float>() + src * kv.elems_per_page();
      float* pb = b.layers[l].ptr<float>() + dst * kv.elems_per_page();
      std::copy(pa, pa + kv.elems_per_page(), pb);  // V (and K, replaced below)
      if (from == to) continue;
      for (int s = 0; s < kv.page_size; ++s)
        for (int h = 0; h < kv.num_kv_heads; ++h) {
          float* y = pb + kv.offset_in_page(0, s, h);
          const float* cs = table.data.data() + int64_t(from + s) * D;
          std::vector<float> x(static_cast<size_t>(D)), q(static_cast<size_t>(D), 0.0f);
          for (int i = 0; i < half; ++i) {
            const double c = cs[i], sn = cs[half + i], det = c * c + sn * sn;
            x[size_t(i)] = float((y[i] * c + y[half + i] * sn) / det);
            x[size_t(half + i)] = float((y[half + i] * c - y[i] * sn) / det);
          }
          int32_t pos = to + s;
          cpu_rope(Tensor(q.data(), {1, D}, DType::F32), Tensor(x.data(), {1, D}, DType::F32),
                   Tensor(&pos, {1}, DType::I32), t, D);
          std::copy(x.begin(), x.end(), y);
        }
    }
  }

 private:
  std::unique_ptr<Backend> cpu_ = make_cpu_backend();
  LoadedModel lm_;
  LlamaModel model_;
};

class StreamingModel : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(StreamingModel, FirstStepAfterAnEvictionEqualsAHandBuiltCache) {
  const auto& [name, layout] = GetParam();
  Reference ref(name);
  const int vocab = int(ref.config().vocab_size);
  const std::vector<int32_t> prompt = random_ids(kPrompt, 11, vocab);
  // The engine: a 20-token prefill (no eviction before it), then the first decode step drops
  // pages 1 and 2 (tokens 4..11): 16 tokens after the sink page, 8 past the window.
  auto e = engine_for(name, streaming_config(kWindow, layout));
  const auto out = e->generate({prompt}, greedy(2));
  ASSERT_EQ(out[0].token_ids.size(), 2u);
  const EngineStats s = e->stats();
  EXPECT_EQ(s.streaming.evictions, 1);
  EXPECT_EQ(s.streaming.evicted_tokens, 8);
  EXPECT_EQ(s.used_pages, 0);

  const KVLayout kv_layout = layout == "NHD" ? KVLayout::NHD : KVLayout::HND;
  KVCache a = ref.cache(kv_layout);
  const std::vector<float> first = ref.step(a, prompt, 0, {0, 1, 2, 3, 4});
  const int32_t g0 = argmax(first);
  ASSERT_EQ(out[0].token_ids[0], g0);
  // The kept cache: the sink page, then the pages of tokens 12..19 at positions 4..11.
  KVCache b = ref.cache(kv_layout);
  ref.copy_page(a, 0, b, 7, 0, 0);
  ref.copy_page(a, 3, b, 2, 12, 4);
  ref.copy_page(a, 4, b, 9, 16, 8);
  // g0 at position 12, its K/V appended to a fresh fourth page.
  const std::vector<float> want = log_softmax(ref.step(b, {g0}, 12, {7, 2, 9, 11}));
  const TokenLogprob& got = out[0].logprobs[1];
  EXPECT_EQ(got.token, argmax(want));
  EXPECT_NEAR(got.logprob, want[size_t(got.token)], 1e-5);
  ASSERT_EQ(got.top.size(), 5u);
  double worst = 0;
  for (const auto& [id, lp] : got.top) {
    EXPECT_NEAR(lp, want[size_t(id)], 1e-5) << "token " << id;
    worst = std::max(worst, std::fabs(double(lp) - want[size_t(id)]));
  }
  // Without the re-rotation the step would differ: the kept keys at their old positions.
  KVCache stale = ref.cache(kv_layout);
  ref.copy_page(a, 0, stale, 7, 0, 0);
  ref.copy_page(a, 3, stale, 2, 12, 12);
  ref.copy_page(a, 4, stale, 9, 16, 16);
  const std::vector<float> unshifted = log_softmax(ref.step(stale, {g0}, 12, {7, 2, 9, 11}));
  double moved = 0;
  for (const auto& [id, lp] : got.top)
    moved = std::max(moved, std::fabs(double(lp) - unshifted[size_t(id)]));
  EXPECT_GT(moved, 10 * std::max(worst, 1e-6))
      << "the shift made no difference: the test would not see a missing one";
  std::printf("%s %s: engine vs hand-built cache %.1e, vs keys left unshifted %.1e\n", name.c_str(),
              layout.c_str(), worst, moved);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, StreamingModel,
                         ::testing::Combine(::testing::Values("tiny-llama", "tiny-phi3-longrope",
                                                              "tiny-gemma3"),
                                            ::testing::Values("NHD", "HND")),
                         [](const auto& i) {
                           std::string n = std::get<0>(i.param) + "_" + std::get<1>(i.param);
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(StreamingModelDense, AWindowCoveringTheStreamGivesTheDenseEnginesLogprobs) {
  const auto golden = testing::read_golden(fixture("tiny-llama"));
  ASSERT_FALSE(golden.empty());
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& g : golden) prompts.push_back(g.ids);
  auto stream = engine_for("tiny-llama", streaming_config(192));  // covers the longest golden + 24
  auto dense = engine_for("tiny-llama", streaming_config(0));
  const auto a = stream->generate(prompts, greedy(24));
  const auto b = dense->generate(prompts, greedy(24));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].token_ids, b[i].token_ids);
    ASSERT_EQ(a[i].logprobs.size(), b[i].logprobs.size());
    for (size_t k = 0; k < a[i].logprobs.size(); ++k) {
      EXPECT_EQ(a[i].logprobs[k].logprob, b[i].logprobs[k].logprob);
      EXPECT_EQ(a[i].logprobs[k].top, b[i].logprobs[k].top);
    }
  }
  EXPECT_EQ(stream->stats().streaming.evictions, 0);
}

TEST(StreamingModelLong, ThousandsOfTokensStayInSinksPlusWindowPages) {
  // tiny-llama has 256 positions; 3000 tokens run through a window of 32 (4 pages of 8).
  EngineConfig cfg = streaming_config(32, "NHD", 8);
  auto e = engine_for("tiny-llama", cfg);
  const int bound = 1 + 4 + 1;
  e->add_request(random_ids(12, 5, 512), greedy(3000, -1));
  int steps = 0, tokens = 0;
  while (e->has_unfinished()) {
    for (const RequestOutput& o : e->step()) tokens += int(o.new_token_ids.size());
    ASSERT_LE(e->stats().used_pages, bound) << "step " << steps;
    ++steps;
  }
  EXPECT_EQ(tokens, 3000);
  const EngineStats s = e->stats();
  EXPECT_EQ(s.used_pages, 0);
  EXPECT_EQ(s.streaming.page_bound, bound);
  EXPECT_LE(s.streaming.peak_request_pages, bound);
  // 3011 tokens computed; at most sinks + window + a page kept.
  EXPECT_GE(s.streaming.evicted_tokens, 3011 - 8 - 32 - 8);
  std::printf(
      "tiny-llama stream: %d tokens in %d steps, peak %d pages (bound %d), %lld evictions\n",
      tokens, steps, s.streaming.peak_request_pages, bound,
      static_cast<long long>(s.streaming.evictions));
}

}  // namespace test_streaming_model
}  // namespace nc

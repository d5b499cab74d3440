// The engine with the prefix cache and cascade attention over the real decoder (LlamaModel on the
// CPU backend) and the tiny fixture models: greedy tokens do not change with the cache or
// cascade on or off, and a multi-turn chat hits the cache as its scenario implies, in three
// levels (test_engine_cascade.cc runs the same scenarios over a token-level fake model).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "backend/backend.h"
#include "fake_model.h"
#include "model/llama.h"
#include "model/model_loader.h"
#include "nanocascade/engine.h"

namespace nc {
namespace test_engine_cascade_models {

std::vector<int32_t> cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

SamplingParams greedy(int max_tokens) {
  return fake::greedy_ignoring_eos(max_tokens);
}

// The engine's StepModel over LlamaModel (the tests' own adapter).
class TinyLlamaStepModel : public StepModel {
 public:
  explicit TinyLlamaStepModel(const std::string& dir)
      : lm_(load_model(dir)),
        backend_(make_cpu_backend()),
        model_(lm_.config, lm_.weights, *backend_) {}
  int vocab_size() const override { return int(lm_.config.vocab_size); }
  int max_position() const override { return int(lm_.config.max_position); }
  bool on_cuda() const override { return false; }
  AttentionCost attention_cost() const override { return {int(lm_.config.num_layers), 0}; }
  int64_t kv_bytes_per_page(int ps) const override {
    return lm_.config.num_layers * 2 * ps * lm_.config.num_kv_heads * lm_.config.head_dim * 4;
  }
  void allocate_kv(int num_pages, int ps, KVLayout layout) override {
    kv_ = model_.make_kv_cache(num_pages, ps, layout);
  }
  std::vector<float> forward(const ForwardInput& in) override { return model_.forward(in, kv_); }

 private:
  LoadedModel lm_;
  std::unique_ptr<Backend> backend_;
  LlamaModel model_;
  KVCache kv_;
};

// The fixture folder of a tiny model: tests/fixtures/<name>, or the loader's copy.
std::string tiny_dir(const std::string& name) {
  for (const std::string& d : {std::string(NC_FIXTURES_DIR) + "/" + name,
                               std::string(NC_FIXTURES_DIR) + "/loader/" + name}) {
    if (std::filesystem::exists(d + "/config.json")) return d;
  }
  return "";
}

std::unique_ptr<Engine> tiny_engine(const std::string& dir, bool cache, bool cascade, int ps) {
  EngineConfig cfg;
  cfg.page_size = ps;
  cfg.max_num_batched_tokens = 512;
  cfg.max_num_seqs = 32;
  cfg.kv_cache_memory = "8000000";
  cfg.enable_prefix_cache = cache;
  cfg.enable_cascade = cascade;
  cfg.cascade_force = cascade;
  return std::make_unique<Engine>(cfg, std::make_unique<TinyLlamaStepModel>(dir),
                                  std::make_unique<fake::FakeCodec>());
}

std::vector<int32_t> tiny_tokens(std::mt19937& rng, int n, int vocab) {
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = 3 + int32_t(rng() % (vocab - 3));  // no BOS/EOS/pad ids
  return t;
}

class EngineCascadeModel : public ::testing::TestWithParam<std::string> {};

// Greedy tokens do not change with the prefix cache or cascade attention, on prompts that share
// prefixes at several depths, for page sizes 1, 4 and 16.
TEST_P(EngineCascadeModel, GreedyTokensIdenticalWithCacheAndCascadeOnOrOff) {
  const std::string dir = tiny_dir(GetParam());
  if (dir.empty()) GTEST_SKIP() << "no fixture " << GetParam();
  std::mt19937 rng(3);
  const int vocab = 40;
  const auto sys = tiny_tokens(rng, 13, vocab), question = tiny_tokens(rng, 6, vocab);
  std::vector<std::vector<int32_t>> w1, w2;
  for (int i = 0; i < 6; ++i) {
    w1.push_back(cat(sys, tiny_tokens(rng, 1 + i, vocab)));
    w2.push_back(cat(i % 2 ? cat(sys, question) : sys, tiny_tokens(rng, 2 + i % 3, vocab)));
  }
  w2.push_back(w1[0]);
  for (int ps : {1, 4, 16}) {
    std::vector<std::vector<int32_t>> base;
    for (int mask = 0; mask < 4; ++mask) {
      SCOPED_TRACE(::testing::Message()
                   << "page " << ps << " cache " << (mask & 1) << " cascade " << (mask >> 1));
      auto e = tiny_engine(dir, mask & 1, mask & 2, ps);
      std::vector<std::vector<int32_t>> got;
      for (const auto& wave : {w1, w2})
        for (const auto& o : e->generate(wave, greedy(8))) got.push_back(o.token_ids);
      if (mask == 0) {
        base = got;
      } else {
        EXPECT_EQ(got, base);
      }
      const EngineStats st = e->stats();
      if (mask == 3 && ps <= 4) {  // at 16 the shared prompt parts fill no whole page
        EXPECT_GE(st.cache.max_levels, 2);
        EXPECT_GT(st.cache.hit_tokens, 0);
      }
    }
  }
}

// One system prompt, 8 conversations, 4 turns, two variants of each user message per turn (see
// the fake-model version in test_engine_cascade.cc): tokens equal a run without cache and cascade,
// hits equal the count the scenario implies, and steps use three levels.
TEST_P(EngineCascadeModel, MultiTurnThreeLevels) {
  const std::string dir = tiny_dir(GetParam());
  if (dir.empty()) GTEST_SKIP() << "no fixture " << GetParam();
  const int ps = 2, answer = 4, vocab = 40;
  std::mt19937 rng(11);
  const auto sys = tiny_tokens(rng, 10, vocab);
  auto on = tiny_engine(dir, true, true, ps), off = tiny_engine(dir, false, false, ps);
  std::vector<std::vector<int32_t>> history(8, sys);
  std::vector<int64_t> prev_computed(8, 0);
  int64_t expected_hits = 0;
  for (int t = 0; t < 4; ++t) {
    std::vector<std::vector<int32_t>> prompts;
    for (int c = 0; c < 8; ++c) {
      for (int v = 0; v < 2; ++v) {
        prompts.push_back(cat(history[c], tiny_tokens(rng, 2 + int(rng() % 2), vocab)));
        if (t > 0) {
          expected_hits += std::min<int64_t>(prev_computed[c], prompts.back().size() - 1) / ps * ps;
        }
      }
    }
    const auto a = on->generate(prompts, greedy(answer));
    const auto b = off->generate(prompts, greedy(answer));
    for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(a[i].token_ids, b[i].token_ids) << t;
    for (int c = 0; c < 8; ++c) {
      prev_computed[c] = int64_t(prompts[2 * c].size()) + answer - 1;
      history[c] = cat(prompts[2 * c], a[2 * c].token_ids);
    }
  }
  const EngineStats st = on->stats();
  EXPECT_EQ(st.cache.hit_tokens, expected_hits);
  EXPECT_EQ(st.cache.max_levels, 3);
  EXPECT_LT(st.cache.kv_bytes_cascade, st.cache.kv_bytes_plain);
  std::printf(
      "[ multi-turn %s ] hit rate %.3f (%lld of %lld prompt tokens), KV bytes %.0f "
      "cascade vs %.0f plain, %d levels at most\n",
      GetParam().c_str(), st.cache.hit_rate, (long long)st.cache.hit_tokens,
      (long long)st.cache.lookup_tokens, st.cache.kv_bytes_cascade, st.cache.kv_bytes_plain,
      st.cache.max_levels);
}

std::string tiny_name(const ::testing::TestParamInfo<std::string>& p) {
  std::string n = p.param;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

INSTANTIATE_TEST_SUITE_P(Tiny, EngineCascadeModel,
                         ::testing::Values("tiny-llama", "tiny-qwen2", "tiny-qwen3"), tiny_name);

}  // namespace test_engine_cascade_models
}  // namespace nc

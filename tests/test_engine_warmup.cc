// Engine::warmup(): one short request, then one decode step at each CUDA graph batch size the
// model reports; no request, no page and no prefix-cache entry left behind.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.h"
#include "fake_model.h"
#include "nanocascade/engine.h"

namespace nc {
namespace test_engine_warmup {

constexpr int kVocab = 300;

// The fake model with graph batch sizes, as the CUDA decoder reports them.
class GraphFakeModel : public fake::FakeModel {
 public:
  GraphFakeModel(std::vector<int> sizes, bool device_sampling)
      : FakeModel(kVocab, 4096, device_sampling), sizes_(std::move(sizes)) {}
  std::vector<int> graph_batch_sizes() const override { return sizes_; }

 private:
  std::vector<int> sizes_;
};

EngineConfig config(bool async) {
  EngineConfig cfg;
  cfg.page_size = 2;  // the warm-up prompts fill pages: the prefix cache would keep them
  cfg.kv_cache_memory = std::to_string(int64_t(4096) * 2 * 8);
  cfg.async_scheduling = async;
  return cfg;
}

TEST(EngineWarmup, LeavesNoRequestNoPageAndNoCacheEntry) {
  for (bool device : {false, true}) {
    auto model = std::make_unique<GraphFakeModel>(std::vector<int>{}, device);
    Engine engine(config(device), std::move(model), std::make_unique<fake::FakeCodec>());
    engine.warmup();
    EXPECT_FALSE(engine.has_unfinished());
    const EngineStats s = engine.stats();
    EXPECT_EQ(s.used_pages, 0);
    EXPECT_EQ(s.cached_pages, 0);
    EXPECT_EQ(s.free_pages, s.total_pages);
    EXPECT_EQ(s.num_running + s.num_waiting, 0);
    EXPECT_EQ(s.cache.lookup_tokens, 0);  // the warm-up bypassed the prefix cache
    EXPECT_GE(s.num_steps, 2);            // a prefill step and decode steps
    EXPECT_GE(s.num_generated_tokens, 1);
    EXPECT_LE(s.num_generated_tokens, 4);
    EXPECT_EQ(s.prefill_steps.steps + s.decode_steps.steps, s.num_steps);
    EXPECT_GT(s.prefill_steps.wall_s, 0);
  }
}

TEST(EngineWarmup, RunsOneDecodeStepAtEachGraphBatchSize) {
  auto owned = std::make_unique<GraphFakeModel>(std::vector<int>{1, 2, 4, 8}, true);
  GraphFakeModel& model = *owned;
  Engine engine(config(true), std::move(owned), std::make_unique<fake::FakeCodec>());
  engine.warmup();
  EXPECT_FALSE(engine.has_unfinished());
  for (int batch : {1, 2, 4, 8}) {
    const bool decoded = std::any_of(model.steps.begin(), model.steps.end(), [&](const auto& st) {
      return st.num_seqs == batch && st.num_tokens == batch;  // one token per request
    });
    EXPECT_TRUE(decoded) << "no decode step of batch " << batch;
  }
  EXPECT_EQ(engine.stats().used_pages, 0);
}

TEST(EngineWarmup, ServingAfterwardsIsUnchangedAndUsesThePrefixCache) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 6;
  const std::vector<std::vector<int32_t>> prompts = {{5, 6, 7, 8, 9, 10, 11}, {1, 2, 3, 4, 5}};
  Engine cold(config(true), std::make_unique<GraphFakeModel>(std::vector<int>{}, true),
              std::make_unique<fake::FakeCodec>());
  Engine warm(config(true), std::make_unique<GraphFakeModel>(std::vector<int>{1, 2}, true),
              std::make_unique<fake::FakeCodec>());
  warm.warmup();
  const auto a = cold.generate(prompts, p);
  const auto b = warm.generate(prompts, p);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].token_ids, b[i].token_ids);
  warm.generate({prompts[0]}, p);  // the same prompt again: its pages come from the cache
  EXPECT_GT(warm.stats().cache.hit_tokens, 0);
}

TEST(EngineWarmup, RefusesAnEngineWithRequests) {
  Engine engine(config(false), std::make_unique<GraphFakeModel>(std::vector<int>{}, false),
                std::make_unique<fake::FakeCodec>());
  SamplingParams p;
  engine.add_request(std::vector<int32_t>{1, 2, 3}, p);
  EXPECT_THROW(engine.warmup(), Error);
  while (engine.has_unfinished()) engine.step();
  engine.warmup();
  EXPECT_FALSE(engine.has_unfinished());
}

}  // namespace test_engine_warmup
}  // namespace nc

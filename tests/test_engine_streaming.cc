// The streaming window (EngineConfig::streaming_window, engine/streaming_window.h) over the fake
// token-level model, whose KV slots record (token, position) and whose logits hash the history it
// reads back through the page table: a wrong page, a slot not moved to its new position or a
// token lost to preemption changes the tokens. References are computed without paging, from the
// rule the window states: before each step, a cache of t tokens after the sinks drops
// floor((t - window) / page) pages when that is >= 1, and the token sampled after a step saw the
// sinks and the kept tokens. Streams run far past the model's max position; pages per request
// stay under sinks + window pages + 1; the invariants are checked after every step.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <map>
#include <random>

#include "core/error.h"
#include "engine/sampling.h"
#include "engine/step_model.h"
#include "fake_model.h"
#include "nanocascade/engine.h"

namespace nc {
namespace {

constexpr int kVocab = 300;

struct Window {
  int page_size = 4;
  int window = 10;  // 3 pages, page-rounded
  int sink_pages = 1;
  int max_pos = 40;  // the model's (and the engine's) context
  int budget = 2048;
  int pages = 512;
  bool async = false;  // device sampling with asynchronous scheduling, else host sampling
  bool prefix_cache = true;
  int bound() const { return sink_pages + (window + page_size - 1) / page_size + 1; }
};

EngineConfig config_of(const Window& w) {
  EngineConfig cfg;
  cfg.page_size = w.page_size;
  cfg.max_num_batched_tokens = w.budget;
  cfg.kv_cache_memory = std::to_string(int64_t(w.pages) * w.page_size * 8);  // 8 bytes a slot
  cfg.async_scheduling = w.async;
  cfg.enable_prefix_cache = w.prefix_cache;
  cfg.streaming_window = w.window;
  cfg.streaming_sink_pages = w.sink_pages;
  cfg.check_invariants = true;
  return cfg;
}

// `model`, when given, points at the engine's model afterwards.
std::unique_ptr<Engine> streaming_engine(const Window& w, fake::FakeModel** model = nullptr) {
  auto m = std::make_unique<fake::FakeModel>(kVocab, w.max_pos, w.async);
  if (model) *model = m.get();
  return std::make_unique<Engine>(config_of(w), std::move(m), std::make_unique<fake::FakeCodec>());
}

// What a lone request generates greedily under the window's rule (top comment); each step
// computes what the scheduler gives one request: the rest of its tokens, at most the budget and
// the positions left below max_pos.
std::vector<int32_t> reference_stream(const std::vector<int32_t>& prompt, int max_tokens,
                                      const Window& w) {
  std::vector<int32_t> toks = prompt, out;
  const int sinks = w.sink_pages * w.page_size;
  int computed = 0, evicted = 0;
  while (int(out.size()) < max_tokens) {
    const int tail = computed - evicted - sinks;
    if (tail - w.window >= w.page_size) evicted += (tail - w.window) / w.page_size * w.page_size;
    computed += std::min({int(toks.size()) - computed, w.budget, w.max_pos - computed + evicted});
    if (computed < int(toks.size())) continue;  // a prefill chunk
    std::vector<int32_t> hist(toks.begin(), toks.begin() + std::min(sinks, computed));
    if (computed > sinks) hist.insert(hist.end(), toks.begin() + sinks + evicted, toks.end());
    out.push_back(argmax(fake::reference_logits(hist, kVocab)));
    toks.push_back(out.back());
  }
  return out;
}

std::vector<int32_t> random_ids(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int32_t& t : p) t = int32_t(rng() % 256);  // bytes: never EOS
  return p;
}

// Runs the requests to completion, checking after every step that no request holds more pages
// than `max_pages` (the pool's used pages, with one request running at a time when asked).
std::vector<CompletionOutput> run(Engine& e, const std::vector<std::vector<int32_t>>& prompts,
                                  int max_tokens, int max_used_pages = -1) {
  std::map<RequestId, size_t> index;
  std::vector<CompletionOutput> out(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i)
    index[e.add_request(prompts[i], fake::greedy_ignoring_eos(max_tokens))] = i;
  while (e.has_unfinished()) {
    for (const RequestOutput& o : e.step()) out[index.at(o.id)].append(o);
    if (max_used_pages >= 0) {
      EXPECT_LE(e.stats().used_pages, max_used_pages);
    }
  }
  return out;
}

class EngineStreaming : public ::testing::TestWithParam<bool> {
 protected:
  Window window() const {
    Window w;
    w.async = GetParam();
    return w;
  }
};

TEST_P(EngineStreaming, AStreamFarPastTheContextSeesItsSinksAndItsWindow) {
  const Window w = window();
  fake::FakeModel* model = nullptr;
  auto e = streaming_engine(w, &model);
  const std::vector<int32_t> prompt = random_ids(7, 1);
  const auto out = run(*e, {prompt}, 300, w.bound());
  EXPECT_EQ(out[0].token_ids, reference_stream(prompt, 300, w));
  // Positions within the cache: below sinks + window + a page, never near the 306 computed.
  EXPECT_LT(model->max_position_seen, w.bound() * w.page_size);
  EXPECT_GT(model->pages_shifted, 0);
  const EngineStats s = e->stats();
  EXPECT_EQ(s.used_pages, 0);  // nothing leaked
  EXPECT_EQ(s.streaming.page_bound, w.bound());
  EXPECT_LE(s.streaming.peak_request_pages, w.bound());
  EXPECT_GT(s.streaming.evictions, 0);
  // 306 tokens computed, 4 sinks + at most window + a page kept at the end.
  EXPECT_GE(s.streaming.evicted_tokens, 306 - 4 - w.window - w.page_size);
  EXPECT_EQ(s.streaming.evicted_tokens % w.page_size, 0);
}

TEST_P(EngineStreaming, APromptLongerThanTheContextPrefillsInChunksEvictingBetweenThem) {
  Window w = window();
  w.budget = 8;
  auto e = streaming_engine(w);
  const std::vector<int32_t> prompt = random_ids(150, 2);
  // A chunk adds its own pages to the decode bound.
  const auto out = run(*e, {prompt}, 40, w.bound() + w.budget / w.page_size);
  EXPECT_EQ(out[0].token_ids, reference_stream(prompt, 40, w));
  EXPECT_EQ(out[0].finish_reason, FinishReason::Length);
  EXPECT_EQ(e->stats().used_pages, 0);
}

TEST_P(EngineStreaming, AWindowCoveringTheWholeStreamIsTheDenseEngine) {
  Window w = window();
  w.max_pos = 512;
  w.window = 256;
  const std::vector<std::vector<int32_t>> prompts = {random_ids(20, 3), random_ids(33, 4)};
  auto streaming = streaming_engine(w);
  const auto out = run(*streaming, prompts, 100);
  Window dense = w;
  dense.window = 0;
  auto plain = streaming_engine(dense);
  const auto want = run(*plain, prompts, 100);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(out[i].token_ids, want[i].token_ids);
  EXPECT_EQ(streaming->stats().streaming.evictions, 0);
  EXPECT_EQ(plain->stats().streaming.window_tokens, 0);
}

TEST_P(EngineStreaming, PreemptionRecomputesTheWindowAndLosesNothing) {
  Window w = window();
  w.pages = 12;  // two requests' bound: four streams preempt each other
  auto e = streaming_engine(w);
  std::vector<std::vector<int32_t>> prompts;
  for (uint32_t i = 0; i < 4; ++i) prompts.push_back(random_ids(3 + int(i) * 2, 10 + i));
  const auto out = run(*e, prompts, 200);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(out[i].token_ids.size(), 200u);
    EXPECT_EQ(out[i].token_ids, reference_stream(prompts[i], 200, w)) << "request " << i;
  }
  const EngineStats s = e->stats();
  EXPECT_GT(s.num_preemptions, 0);
  EXPECT_GT(s.streaming.evictions, 0);
  EXPECT_EQ(s.used_pages, 0);
}

INSTANTIATE_TEST_SUITE_P(Sampling, EngineStreaming, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? "device_async" : "host";
                         });

TEST(EngineStreamingCache, ARequestThatMayEvictSharesOnlyItsSinkPages) {
  Window w;
  auto e = streaming_engine(w);
  const std::vector<int32_t> prompt = random_ids(30, 5);  // past sinks + window + a page
  const auto first = run(*e, {prompt}, 20);
  const int64_t hits_before = e->stats().cache.hit_tokens;
  const auto second = run(*e, {prompt}, 20);
  EXPECT_EQ(first[0].token_ids, second[0].token_ids);
  EXPECT_EQ(e->stats().cache.hit_tokens - hits_before, w.sink_pages * w.page_size);
  // One that never reaches an eviction shares as a dense request does: all its full pages.
  Window roomy = w;
  roomy.window = 24;
  auto f = streaming_engine(roomy);
  const std::vector<int32_t> short_prompt = random_ids(13, 6);
  run(*f, {short_prompt}, 3);
  run(*f, {short_prompt}, 3);
  EXPECT_EQ(f->stats().cache.hit_tokens, 12);
  EXPECT_EQ(f->stats().streaming.evictions, 0);
}

// Review of 2026-12-07: a request whose whole cache is exactly sinks + window + a page was taken
// to never evict and shared all its pages; preempted with its last token in flight (async), it
// evicted, and the step threw ("evicted tokens but shares its pages"), aborting every request.
TEST(EngineStreamingCache, APreemptedRequestAtItsLastTokenStillFinishes) {
  int runs = 0;
  for (int pages = 6; pages <= 8; ++pages) {
    for (int a_max = 8; a_max <= 16; ++a_max) {
      EngineConfig cfg;
      cfg.page_size = 4;
      cfg.max_num_batched_tokens = 64;
      cfg.kv_cache_memory = std::to_string(pages * 4 * 8);  // the fake model: 8 bytes a token
      cfg.streaming_window = 8;
      cfg.streaming_sink_pages = 1;
      cfg.async_scheduling = true;
      cfg.check_invariants = true;
      Engine e(cfg, std::make_unique<fake::FakeModel>(300, 64, true),
               std::make_unique<fake::FakeCodec>());
      std::vector<int32_t> a(3), b(7);
      for (int i = 0; i < 3; ++i) a[size_t(i)] = i;
      for (int i = 0; i < 7; ++i) b[size_t(i)] = 100 + i;
      const RequestId ra = e.add_request(a, fake::greedy_ignoring_eos(a_max));
      const RequestId rb = e.add_request(b, fake::greedy_ignoring_eos(10));  // 7 + 10 - 1 = 16
      std::map<RequestId, int> tokens;
      ASSERT_NO_THROW({
        while (e.has_unfinished())
          for (const RequestOutput& o : e.step()) tokens[o.id] += int(o.new_token_ids.size());
      }) << "pages "
         << pages << " a_max " << a_max;
      EXPECT_EQ(tokens[ra], a_max);
      EXPECT_EQ(tokens[rb], 10);
      runs += e.stats().num_preemptions > 0;
    }
  }
  EXPECT_GT(runs, 0);  // the case needs a preemption
}

// A fake model whose forward pass fails to be queued at its `fail_at`-th call.
struct FlakyModel : fake::FakeModel {
  FlakyModel() : fake::FakeModel(300, 64, true) {}
  int calls = 0, fail_at = -1;
  std::unique_ptr<QueuedPass> forward_async(const ForwardInput& in) override {
    if (calls++ == fail_at) fail("flaky model: the pass could not be queued");
    return FakeModel::forward_async(in);
  }
};

// Review of 2026-12-07: a launch that failed after schedule() had run left its requests running
// without the window's key shifts, so the retry saw unrotated keys (here the fake model's
// position check). A failed launch now aborts its requests, and the engine goes on.
TEST(EngineStreamingErrors, AFailedLaunchAbortsItsRequestsAndTheEngineGoesOn) {
  for (int fail_at = 0; fail_at < 24; ++fail_at) {
    for (bool async : {false, true}) {
      SCOPED_TRACE(testing::Message() << "fail_at " << fail_at << " async " << async);
      EngineConfig cfg;
      cfg.page_size = 4;
      cfg.max_num_batched_tokens = 64;
      cfg.kv_cache_memory = std::to_string(64 * 4 * 8);
      cfg.streaming_window = 8;
      cfg.streaming_sink_pages = 1;
      cfg.async_scheduling = async;
      cfg.check_invariants = true;
      auto model = std::make_unique<FlakyModel>();
      model->fail_at = fail_at;
      Engine e(cfg, std::move(model), std::make_unique<fake::FakeCodec>());
      e.add_request(std::vector<int32_t>{1, 2, 3, 4, 5}, fake::greedy_ignoring_eos(40));
      int errors = 0;
      FinishReason end = FinishReason::None;
      while (e.has_unfinished() && errors < 3) {
        try {
          for (const RequestOutput& o : e.step())
            if (o.finished) end = o.finish_reason;
        } catch (const Error&) {
          ++errors;
        }
      }
      ASSERT_EQ(errors, 1);
      EXPECT_EQ(end, FinishReason::Abort);
      // Still serving: a new request runs to its end.
      const CompletionOutput after = e.generate(std::vector<std::vector<int32_t>>{{7, 8, 9}},
                                                fake::greedy_ignoring_eos(12))[0];
      EXPECT_EQ(after.token_ids.size(), 12u);
      EXPECT_EQ(after.finish_reason, FinishReason::Length);
    }
  }
}

// A model whose forward passes cannot carry kv_shifts (the StepModel default).
struct NoShiftModel : fake::FakeModel {
  NoShiftModel() : fake::FakeModel(kVocab, 64) {}
  void check_kv_shifts() override { StepModel::check_kv_shifts(); }
};

// The error's kind and whether its message names `needle`.
std::pair<ErrorKind, bool> error_of(const EngineConfig& cfg, const std::string& needle,
                                    std::unique_ptr<StepModel> model = nullptr) {
  if (!model) model = std::make_unique<fake::FakeModel>(kVocab, 64);
  try {
    Engine e(cfg, std::move(model), std::make_unique<fake::FakeCodec>());
  } catch (const Error& err) {
    return {err.kind(), std::string(err.what()).find(needle) != std::string::npos};
  }
  ADD_FAILURE() << "no error for " << needle;
  return {ErrorKind::Internal, false};
}

TEST(EngineStreamingErrors, BadSettingsAreRefusedByName) {
  Window w;
  w.max_pos = 64;
  EngineConfig cfg = config_of(w);
  cfg.streaming_window = 3;  // less than a page of 4
  EXPECT_EQ(error_of(cfg, "smaller than a page"), std::make_pair(ErrorKind::InvalidArgument, true));
  cfg.streaming_window = 16;
  cfg.streaming_sink_pages = -1;
  EXPECT_EQ(error_of(cfg, "streaming_sink_pages"),
            std::make_pair(ErrorKind::InvalidArgument, true));
  cfg.streaming_window = 0;  // even when off
  EXPECT_EQ(error_of(cfg, "streaming_sink_pages"),
            std::make_pair(ErrorKind::InvalidArgument, true));
  cfg.streaming_window = -4;
  cfg.streaming_sink_pages = 1;
  EXPECT_EQ(error_of(cfg, "streaming_window"), std::make_pair(ErrorKind::InvalidArgument, true));
  cfg.streaming_window = 60;  // 1 + 15 + 1 pages of 4 > 64 positions
  EXPECT_EQ(error_of(cfg, "do not fit the context"),
            std::make_pair(ErrorKind::ContextLength, true));
  // Sizes whose int sums wrapped negative (and passed the check, then hung the stream).
  cfg.streaming_window = INT_MAX;
  EXPECT_EQ(error_of(cfg, "do not fit the context"),
            std::make_pair(ErrorKind::ContextLength, true));
  cfg.streaming_window = 16;
  cfg.streaming_sink_pages = INT_MAX - 1;
  EXPECT_EQ(error_of(cfg, "do not fit the context"),
            std::make_pair(ErrorKind::ContextLength, true));
  cfg.streaming_sink_pages = 1;
  cfg.streaming_window = 16;
  cfg.sparse_budget = 256;
  EXPECT_EQ(error_of(cfg, "sparse"), std::make_pair(ErrorKind::InvalidArgument, true));
  cfg.sparse_budget = 0;
  EXPECT_EQ(error_of(cfg, "cannot move its cached keys", std::make_unique<NoShiftModel>()),
            std::make_pair(ErrorKind::Unsupported, true));
  // The same settings pass with a model that moves its keys.
  EXPECT_NO_THROW(Engine(cfg, std::make_unique<fake::FakeModel>(kVocab, 64),
                         std::make_unique<fake::FakeCodec>()));
}

TEST(EngineStreamingErrors, OnlyAStreamMayOutgrowTheContext) {
  Window w;
  w.max_pos = 64;
  const std::vector<int32_t> prompt = random_ids(100, 7);
  auto stream = streaming_engine(w);
  EXPECT_NO_THROW(stream->add_request(prompt, fake::greedy_ignoring_eos(1000)));
  Window dense = w;
  dense.window = 0;
  auto plain = streaming_engine(dense);
  try {
    plain->add_request(prompt, fake::greedy_ignoring_eos(10));
    ADD_FAILURE() << "a prompt past the context was queued";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::ContextLength);
  }
}

}  // namespace
}  // namespace nc

// The engine's sessions (set_session: a conversation's cached pages pinned against eviction) and
// prompt pages shared through the prefix cache while their first request still runs, over the
// fake model (fake_engine.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "fake_engine.h"

namespace nc {
namespace {

// A conversation marked with set_session keeps its cached pages under eviction pressure that
// takes the pages of an unpinned request instead, although the conversation's are older.
TEST(EngineSessions, PinnedConversationSurvivesEviction) {
  auto run = [](bool pin) {
    auto e = fake_engine(/*page_size=*/4, /*budget=*/256, /*pages=*/24);
    SamplingParams p = greedy(1);
    auto finish = [&](const std::vector<int32_t>& prompt, const std::string& session) {
      const RequestId id = e->add_request(prompt, p);
      if (!session.empty()) e->set_session(id, session);
      while (e->has_unfinished()) e->step();
    };
    std::vector<int32_t> alice(32), bob(32), carol(44);
    for (int i = 0; i < 32; ++i) alice[i] = 1 + i, bob[i] = 100 + i;
    for (int i = 0; i < 44; ++i) carol[i] = 200 + i;
    finish(alice, pin ? "alice" : "");  // 8 cached pages, the oldest
    finish(bob, "");                    // 8 cached pages
    finish(carol, "");                  // needs 11: 3 must be evicted
    const int64_t hits_before = e->stats().cache.hit_tokens;
    std::vector<int32_t> follow_up = alice;
    follow_up.push_back(7);
    finish(follow_up, pin ? "alice" : "");
    EXPECT_GT(e->stats().cache.evicted_pages, 0);
    EXPECT_EQ(e->stats().used_pages, 0);
    return e->stats().cache.hit_tokens - hits_before;
  };
  EXPECT_EQ(run(/*pin=*/true), 32);   // alice's whole prompt is still cached
  EXPECT_LT(run(/*pin=*/false), 32);  // LRU took alice's oldest pages
}

// Requests sent together with one system prompt: the first one's prompt pages enter the prefix
// cache when its prefill is done, so requests admitted after it reuse them while it still runs.
TEST(EnginePrefixCache, PromptPagesAreSharedBeforeTheFirstRequestFinishes) {
  auto e = fake_engine(/*page_size=*/4, /*budget=*/40, /*pages=*/4096);
  std::vector<std::vector<int32_t>> prompts;
  for (int r = 0; r < 8; ++r) {
    std::vector<int32_t> p;
    for (int i = 0; i < 32; ++i) p.push_back(1 + i);  // the shared system prompt
    for (int i = 0; i < 5; ++i) p.push_back(100 + 10 * r + i);
    prompts.push_back(p);
  }
  SamplingParams p = greedy(20);
  p.ignore_eos = true;
  auto alone = fake_engine(4, 40, 4096)->generate({prompts[3]}, p);
  const auto outs = e->generate(prompts, p);
  const EngineStats st = e->stats();
  // Step 1 runs request 0's 37 tokens; the 7 others share its 32-token prefix and wait for its
  // prefill (not admitted in step 1 although the budget has room for 3 more tokens), then find
  // the prefix in the cache while request 0 is still decoding.
  EXPECT_EQ(st.cache.hit_tokens, 7 * 32);
  EXPECT_EQ(outs[3].token_ids, alone[0].token_ids);
  EXPECT_EQ(st.used_pages, 0);
}

TEST(EngineSessions, SetSessionErrors) {
  auto e = fake_engine();
  EXPECT_THROW(e->set_session(12345, "x"), Error);
  const RequestId id = e->add_request(std::vector<int32_t>{1, 2, 3}, greedy(2));
  e->step();
  EXPECT_THROW(e->set_session(id, "late"), Error);  // already running
}

}  // namespace
}  // namespace nc

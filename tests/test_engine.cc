// The engine end to end over the fake token-level model and byte codec (fast, exact references);
// over the real decoder: test_engine_tiny.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "core/error.h"
#include "engine/detokenizer.h"
#include "engine/sampling.h"
#include "engine/step_model.h"
#include "fake_engine.h"
#include "fake_model.h"
#include "golden.h"
#include "nanocascade/engine.h"

namespace nc {
namespace {

// The engine tests below run in each sampling mode: fake_engine() inside them makes an engine of
// the test's mode.
class EngineModes : public ::testing::TestWithParam<Sampling> {
 protected:
  std::unique_ptr<Engine> fake_engine(int page_size = 16, int budget = 2048, int pages = 4096,
                                      int max_seqs = 256, int max_pos = 4096) {
    return nc::fake_engine(page_size, budget, pages, max_seqs, max_pos, GetParam());
  }
  bool async() const { return GetParam() == Sampling::DeviceAsync; }
};

std::vector<std::vector<int32_t>> random_prompts(int n, int max_len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> p(1 + rng() % max_len);
    for (int32_t& t : p) t = int32_t(rng() % 256);  // bytes: never EOS
    out.push_back(p);
  }
  return out;
}

// Greedy reference with the engine's stop rules for EOS.
std::vector<int32_t> reference_greedy(std::vector<int32_t> seq, int max_tokens, bool ignore_eos) {
  std::vector<int32_t> out;
  while (int(out.size()) < max_tokens) {
    const int32_t t = argmax(fake::reference_logits(seq, kFakeVocab));
    out.push_back(t);
    seq.push_back(t);
    if (!ignore_eos && t == fake::FakeCodec::kEos) break;
  }
  return out;
}

}  // namespace

TEST_P(EngineModes, GreedyMatchesReferenceForAnyBatchingAndPageSize) {
  const auto prompts = random_prompts(32, 60, 11);
  SamplingParams p = greedy(24);
  p.ignore_eos = true;
  std::vector<std::vector<int32_t>> expected;
  for (const auto& pr : prompts) expected.push_back(reference_greedy(pr, 24, true));
  for (int page : {1, 16, 64}) {
    for (int budget : {16, 64, 512}) {
      SCOPED_TRACE(::testing::Message() << "page " << page << " budget " << budget);
      auto e = fake_engine(page, budget);
      const auto outs = e->generate(prompts, p);
      for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_EQ(outs[i].token_ids, expected[i]) << i;
        EXPECT_EQ(outs[i].finish_reason, FinishReason::Length);
      }
      const EngineStats st = e->stats();
      EXPECT_EQ(st.used_pages, 0);
      EXPECT_EQ(st.free_pages + st.cached_pages, st.total_pages);  // finished: free or cached
      // Asynchronous scheduling queued steps behind running ones; the others never did.
      EXPECT_EQ(st.num_overlapped_steps > 0, async());
      EXPECT_EQ(st.num_device_sampled > 0, GetParam() != Sampling::Host);
    }
  }
}

TEST_P(EngineModes, PreemptionGivesTheSameOutputAsAnUnconstrainedRun) {
  const auto prompts = random_prompts(24, 50, 12);
  SamplingParams p = greedy(30);
  p.ignore_eos = true;
  auto big = fake_engine(4, 128, 4096);
  auto small = fake_engine(4, 128, 24);  // 24 pages = 96 tokens; each request needs <= 79
  const auto a = big->generate(prompts, p);
  const auto b = small->generate(prompts, p);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(a[i].token_ids, b[i].token_ids) << i;
  EXPECT_EQ(big->stats().num_preemptions, 0);
  EXPECT_GT(small->stats().num_preemptions, 0);
  EXPECT_EQ(small->stats().free_pages + small->stats().cached_pages, 24);
}

TEST_P(EngineModes, SeededSamplingDoesNotDependOnTheBatch) {
  const auto prompts = random_prompts(12, 30, 13);
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_p = 0.95f;
  p.max_tokens = 20;
  p.seed = 1234;
  auto together = fake_engine(16, 64);
  const auto all = together->generate(prompts, p);
  for (size_t i = 0; i < prompts.size(); i += 5) {
    auto alone = fake_engine(8, 2048);
    EXPECT_EQ(alone->generate({prompts[i]}, p)[0].token_ids, all[i].token_ids) << i;
  }
  // Without a seed, the engine's seed decides, in order of arrival.
  p.seed.reset();
  auto e1 = fake_engine(), e2 = fake_engine(4, 32);
  const auto r1 = e1->generate(prompts, p), r2 = e2->generate(prompts, p);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(r1[i].token_ids, r2[i].token_ids);
}

TEST_P(EngineModes, EosStopsUnlessIgnored) {
  // Find prompts whose greedy chain reaches EOS within 200 tokens.
  const auto prompts = random_prompts(200, 10, 14);
  int found = 0;
  for (const auto& pr : prompts) {
    const auto ref = reference_greedy(pr, 200, false);
    if (ref.back() != fake::FakeCodec::kEos) continue;
    ++found;
    auto e = fake_engine();
    const auto out = e->generate({pr}, greedy(200))[0];
    EXPECT_EQ(out.token_ids, ref);
    EXPECT_EQ(out.finish_reason, FinishReason::Stop);
    EXPECT_EQ(out.text, e->decode(std::vector<int32_t>(ref.begin(), ref.end() - 1)));
    // min_tokens past the EOS masks it.
    SamplingParams m = greedy(200);
    m.min_tokens = int(ref.size()) + 1;
    const auto masked = e->generate({pr}, m)[0];
    ASSERT_GE(masked.token_ids.size(), size_t(m.min_tokens));
    for (int i = 0; i < m.min_tokens; ++i) EXPECT_NE(masked.token_ids[i], fake::FakeCodec::kEos);
    if (found == 3) break;
  }
  EXPECT_GT(found, 0);
}

TEST_P(EngineModes, StopStringsStopAndAreNotEmitted) {
  const auto prompts = random_prompts(40, 20, 15);
  SamplingParams p = greedy(40);
  p.ignore_eos = true;
  int checked = 0;
  for (const auto& pr : prompts) {
    const auto ref = reference_greedy(pr, 40, true);
    auto e = fake_engine();
    const std::string full = e->decode(ref);
    // A stop string taken from the middle of the text (bytes 10..12), if it is valid there.
    if (full.size() < 20) continue;
    const std::string stop = full.substr(10, 3);
    const size_t first = full.find(stop);
    // Bytes that finish a character the prompt began are no output (detokenizer.h).
    const std::string prompt_text = e->decode(pr);
    size_t skip = 0;
    if (utf8_complete_length(prompt_text) < prompt_text.size())
      while (skip < full.size() && (uint8_t(full[skip]) & 0xC0) == 0x80) ++skip;
    if (first < skip) continue;
    SamplingParams q = p;
    q.stop = {stop};
    std::string streamed;
    const RequestId id = e->add_request(pr, q);
    bool finished = false;
    FinishReason reason = FinishReason::None;
    while (e->has_unfinished()) {
      for (const auto& o : e->step()) {
        ASSERT_EQ(o.id, id);
        streamed += o.text_delta;
        finished = o.finished;
        reason = o.finish_reason;
      }
    }
    EXPECT_TRUE(finished);
    EXPECT_EQ(reason, FinishReason::Stop);
    EXPECT_EQ(streamed, full.substr(skip, first - skip));
    ++checked;
  }
  EXPECT_GT(checked, 5);
}

TEST_P(EngineModes, MaxTokensAndMinTokensHold) {
  const auto prompts = random_prompts(8, 20, 16);
  auto e = fake_engine();
  for (int n : {1, 5, 17}) {
    SamplingParams p = greedy(n);
    p.ignore_eos = true;
    for (const auto& o : e->generate(prompts, p)) {
      EXPECT_EQ(int(o.token_ids.size()), n);
      EXPECT_EQ(o.finish_reason, FinishReason::Length);
    }
  }
  SamplingParams p;
  p.temperature = 1.0f;
  p.max_tokens = 10;
  p.min_tokens = 10;
  p.stop_token_ids = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  for (const auto& o : e->generate(prompts, p)) {
    EXPECT_EQ(o.token_ids.size(), 10u);
    for (int32_t t : o.token_ids) EXPECT_GT(t, 10);
  }
}

TEST_P(EngineModes, StreamedTextEqualsDecodedTokens) {
  const auto prompts = random_prompts(10, 20, 17);
  SamplingParams p = greedy(50);
  p.ignore_eos = true;
  auto e = fake_engine(8, 64);
  std::map<RequestId, std::string> text;
  std::map<RequestId, std::vector<int32_t>> ids;
  for (const auto& pr : prompts) e->add_request(pr, p);
  while (e->has_unfinished()) {
    for (const auto& o : e->step()) {
      text[o.id] += o.text_delta;
      ids[o.id].insert(ids[o.id].end(), o.new_token_ids.begin(), o.new_token_ids.end());
      if (o.finished) {
        EXPECT_EQ(o.num_completion_tokens, 50);
        EXPECT_EQ(o.num_prompt_tokens, int(prompts[o.id].size()));
        EXPECT_GE(o.time_to_first_token_s, 0.0);
      }
    }
  }
  for (auto& [id, t] : text) EXPECT_EQ(t, e->decode(ids[id])) << id;
}

TEST_P(EngineModes, BadInputIsRejectedWhileOthersContinue) {
  auto e = fake_engine(16, 2048, 64, 256, 256);  // 64 pages of 16 tokens, context 256
  SamplingParams ok = greedy(10);
  ok.ignore_eos = true;
  const RequestId good = e->add_request(std::vector<int32_t>{1, 2, 3}, ok);
  std::vector<int32_t> got;
  for (const auto& o : e->step())
    got.insert(got.end(), o.new_token_ids.begin(), o.new_token_ids.end());
  auto rejects = [&](auto fn, const char* what) {
    try {
      fn();
      ADD_FAILURE() << what << " accepted";
    } catch (const Error& err) {
      EXPECT_NE(std::string(err.what()).find(what), std::string::npos) << err.what();
    }
  };
  rejects([&] { e->add_request(std::vector<int32_t>{}, ok); }, "empty prompt");
  rejects([&] { e->add_request(std::string(), ok); }, "empty prompt");
  rejects([&] { e->add_request(std::vector<int32_t>(300, 1), ok); }, "context");
  rejects([&] { e->add_request(std::vector<int32_t>(250, 1), greedy(10)); }, "max_tokens");
  rejects([&] { e->add_request(std::vector<int32_t>{1, 5000}, ok); }, "vocabulary");
  SamplingParams bad = ok;
  bad.top_p = 0;
  rejects([&] { e->add_request(std::vector<int32_t>{1}, bad); }, "top_p");
  rejects([&] { e->add_chat_request({{"wizard", "hi"}}, ok); }, "role");
  while (e->has_unfinished()) {
    for (const auto& o : e->step()) {
      EXPECT_EQ(o.id, good);
      got.insert(got.end(), o.new_token_ids.begin(), o.new_token_ids.end());
    }
  }
  EXPECT_EQ(got, reference_greedy({1, 2, 3}, 10, true));
  // A request too large for the whole KV cache (64 pages) is refused at admission.
  auto tiny = fake_engine(16, 2048, 4, 256, 256);
  rejects([&] { tiny->add_request(std::vector<int32_t>(60, 1), greedy(10)); }, "KV pages");
  EXPECT_FALSE(tiny->has_unfinished());
}

TEST_P(EngineModes, AbortFinishesAndFreesPages) {
  auto e = fake_engine(4, 64, 256);
  SamplingParams p = greedy(100);
  p.ignore_eos = true;
  const RequestId a = e->add_request(std::vector<int32_t>(30, 7), p);
  const RequestId b = e->add_request(std::vector<int32_t>(20, 9), p);
  e->step();
  e->step();
  EXPECT_GT(e->stats().used_pages, 0);
  e->abort(a);
  e->abort(12345);  // unknown: ignored
  bool a_reported = false;
  for (const auto& o : e->step()) {
    if (o.id == a) {
      a_reported = true;
      EXPECT_TRUE(o.finished);
      EXPECT_EQ(o.finish_reason, FinishReason::Abort);
    }
  }
  EXPECT_TRUE(a_reported);
  e->abort(b);
  while (e->has_unfinished()) e->step();
  EXPECT_EQ(e->stats().used_pages, 0);
  EXPECT_EQ(e->stats().num_running, 0);
}

TEST_P(EngineModes, ChatRequestUsesTheTemplate) {
  auto e = fake_engine();
  SamplingParams p = greedy(5);
  p.ignore_eos = true;
  const std::vector<ChatMessage> msgs = {{"system", "be brief"}, {"user", "hi"}};
  const std::string prompt = e->apply_chat_template(msgs);
  EXPECT_EQ(prompt, "<system>be brief\n<user>hi\n<assistant>");
  const RequestId id = e->add_chat_request(msgs, p);
  std::vector<int32_t> got;
  while (e->has_unfinished()) {
    for (const auto& o : e->step()) {
      EXPECT_EQ(o.id, id);
      got.insert(got.end(), o.new_token_ids.begin(), o.new_token_ids.end());
    }
  }
  EXPECT_EQ(got, reference_greedy(e->encode(prompt, false), 5, true));
}

// A mixed workload: greedy and seeded requests, host-sampled ones (a repetition penalty; EOS
// masked by min_tokens) between device-sampled ones, EOS and stop-string stops, shared prompt
// prefixes, chunked prefill and preemption in a small pool, and aborts in the middle of a run.
// Every request finishes exactly once, nothing is reported after its end, no page leaks, and
// the requests nobody aborted produce the same tokens as in a run without aborts; with device
// sampling, asynchronous scheduling changes no token.
struct MixedRun {
  std::map<RequestId, std::vector<int32_t>> tokens;
  std::map<RequestId, std::string> text;
  std::map<RequestId, FinishReason> reason;
};

MixedRun run_mixed(Engine& e, const std::set<int>& abort_at_step_3) {
  std::mt19937 rng(21);
  std::vector<int32_t> system(24);
  for (int32_t& t : system) t = int32_t(rng() % 256);
  for (int i = 0; i < 40; ++i) {
    std::vector<int32_t> prompt = i % 2 ? system : std::vector<int32_t>{};
    for (int k = 1 + int(rng() % 30); k > 0; --k) prompt.push_back(int32_t(rng() % 256));
    SamplingParams p;
    p.temperature = i % 3 == 0 ? 0.0f : 0.8f;
    p.seed = 100 + uint64_t(i);
    p.max_tokens = 1 + int(rng() % 40);
    p.ignore_eos = i % 4 == 0;
    if (i % 5 == 0) p.repetition_penalty = 1.2f;
    if (i % 7 == 0) p.min_tokens = 3;
    if (i % 3 == 1) p.stop = {"a", "b", "c", "d", "e", "f"};
    EXPECT_EQ(e.add_request(prompt, p), RequestId(i));
  }
  MixedRun out;
  std::set<RequestId> done;
  for (int step = 0; e.has_unfinished(); ++step) {
    if (step == 3)
      for (int id : abort_at_step_3) e.abort(id);
    for (const RequestOutput& o : e.step()) {
      EXPECT_FALSE(done.count(o.id)) << "request " << o.id << " reported after it finished";
      out.tokens[o.id].insert(out.tokens[o.id].end(), o.new_token_ids.begin(),
                              o.new_token_ids.end());
      out.text[o.id] += o.text_delta;
      for (int32_t t : o.new_token_ids) EXPECT_TRUE(t >= 0 && t < kFakeVocab) << t;
      if (o.finished) done.insert(o.id), out.reason[o.id] = o.finish_reason;
    }
  }
  EXPECT_EQ(done.size(), 40u);
  const EngineStats st = e.stats();
  EXPECT_EQ(st.used_pages, 0);
  EXPECT_EQ(st.free_pages + st.cached_pages, st.total_pages);
  return out;
}

TEST_P(EngineModes, MixedWorkloadWithAbortsFinishesEverythingOnce) {
  auto plain = fake_engine(4, 48, 40);  // 160 slots: preemptions
  const MixedRun all = run_mixed(*plain, {});
  EXPECT_GT(plain->stats().num_preemptions, 0);
  for (const auto& [id, reason] : all.reason) EXPECT_NE(reason, FinishReason::Abort) << id;
  const std::set<int> aborted = {2, 5, 11, 23, 31};
  auto e = fake_engine(4, 48, 40);
  const MixedRun some = run_mixed(*e, aborted);
  for (int id = 0; id < 40; ++id) {
    if (aborted.count(id)) {
      // Aborted, unless it had already finished.
      if (some.reason.at(id) != FinishReason::Abort) {
        EXPECT_EQ(some.tokens.at(id), all.tokens.at(id)) << id;
      }
      continue;
    }
    EXPECT_EQ(some.tokens.at(id), all.tokens.at(id)) << id;
    EXPECT_EQ(some.text.at(id), all.text.at(id)) << id;
    EXPECT_EQ(some.reason.at(id), all.reason.at(id)) << id;
  }
  if (GetParam() == Sampling::Host) return;
  // Device sampling with and without asynchronous scheduling: the same tokens.
  auto other =
      nc::fake_engine(4, 48, 40, 256, 4096, async() ? Sampling::Device : Sampling::DeviceAsync);
  const MixedRun again = run_mixed(*other, {});
  EXPECT_EQ(again.tokens, all.tokens);
  EXPECT_EQ(again.reason, all.reason);
}

// A step whose tokens never arrive (a device error at the copy back) while the next step is
// already queued: step() throws; the failed step's requests finish as aborted, the others go on,
// nothing leaks, and the engine serves new requests afterwards.
TEST(EngineAsync, AFailedStepAbortsItsRequestsAndTheEngineGoesOn) {
  EngineConfig cfg;
  cfg.page_size = 4;
  cfg.max_num_batched_tokens = 64;
  cfg.kv_cache_memory = std::to_string(4096 * 4 * 8);
  auto model = std::make_unique<fake::FakeModel>(kFakeVocab, 4096, /*device_sampling=*/true);
  model->fail_wait_at = 3;
  Engine e(cfg, std::move(model), std::make_unique<fake::FakeCodec>());
  SamplingParams p = greedy(12);
  p.ignore_eos = true;
  const auto prompts = random_prompts(6, 20, 31);
  for (const auto& pr : prompts) e.add_request(pr, p);
  std::map<RequestId, FinishReason> reason;
  std::map<RequestId, std::vector<int32_t>> got;
  int failures = 0;
  while (e.has_unfinished()) {
    try {
      for (const RequestOutput& o : e.step()) {
        EXPECT_FALSE(reason.count(o.id)) << o.id;
        got[o.id].insert(got[o.id].end(), o.new_token_ids.begin(), o.new_token_ids.end());
        if (o.finished) reason[o.id] = o.finish_reason;
      }
    } catch (const Error& err) {
      ++failures;
      EXPECT_NE(std::string(err.what()).find("the device failed"), std::string::npos);
    }
  }
  EXPECT_EQ(failures, 1);
  ASSERT_EQ(reason.size(), prompts.size());
  int aborted = 0;
  for (const auto& [id, r] : reason) {
    if (r == FinishReason::Abort) {
      ++aborted;
      continue;
    }
    EXPECT_EQ(got[id], reference_greedy(prompts[size_t(id)], 12, true)) << id;
  }
  EXPECT_GT(aborted, 0);
  EXPECT_EQ(e.stats().used_pages, 0);
  const auto after = e.generate({prompts[0]}, p);
  EXPECT_EQ(after[0].token_ids, reference_greedy(prompts[0], 12, true));
  EXPECT_EQ(e.stats().used_pages, 0);
}

// A temperature too small for 1 / t in float (1e-40 is denormal; 1e-38 overflows logit / t) is
// greedy, as in vLLM below 1e-5: the same tokens as temperature 0 in every mode, and no step
// fails for the requests beside it.
TEST_P(EngineModes, ATinyTemperatureIsGreedy) {
  const auto prompts = random_prompts(3, 20, 23);
  auto e = fake_engine();
  std::vector<SamplingParams> ps;
  for (float t : {1e-40f, 1e-38f, 1e-6f}) {
    SamplingParams p = greedy(12);
    p.temperature = t;
    p.ignore_eos = true;
    p.top_k = 5;  // the filtered path too
    ps.push_back(p);
  }
  std::vector<RequestId> ids;
  for (size_t i = 0; i < ps.size(); ++i) ids.push_back(e->add_request(prompts[i], ps[i]));
  std::map<RequestId, std::vector<int32_t>> got;
  while (e->has_unfinished())
    for (const RequestOutput& o : e->step()) {
      EXPECT_NE(o.finish_reason, FinishReason::Abort);
      got[o.id].insert(got[o.id].end(), o.new_token_ids.begin(), o.new_token_ids.end());
    }
  for (size_t i = 0; i < ids.size(); ++i)
    EXPECT_EQ(got[ids[i]], reference_greedy(prompts[i], 12, true))
        << "temperature " << ps[i].temperature;
}

INSTANTIATE_TEST_SUITE_P(Sampling, EngineModes,
                         ::testing::Values(Sampling::Host, Sampling::Device, Sampling::DeviceAsync),
                         sampling_name);

TEST(Engine, ConfigErrors) {
  auto make = [](EngineConfig cfg) {
    return Engine(cfg, std::make_unique<fake::FakeModel>(kFakeVocab, 1024),
                  std::make_unique<fake::FakeCodec>());
  };
  EngineConfig c;
  c.kv_cache_memory = "1MiB";
  c.page_size = 0;
  EXPECT_THROW(make(c), Error);
  c.page_size = 257;
  EXPECT_THROW(make(c), Error);
  c.page_size = 16;
  c.kv_layout = "XYZ";
  EXPECT_THROW(make(c), Error);
  c.kv_layout = "HND";
  c.max_model_len = 5000;  // past the model's 1024
  EXPECT_THROW(make(c), Error);
  c.max_model_len = 0;
  c.kv_cache_memory = "64";  // less than a page
  EXPECT_THROW(make(c), Error);
  c.kv_cache_memory = "lots";
  EXPECT_THROW(make(c), Error);
}

}  // namespace nc

// Random mixes of requests against the engine's invariants and a reference without paging: a
// seed draws a configuration (page size, token budget, a pool small enough to preempt often,
// sequence cap, how tokens are sampled, a host tier, the context length, a streaming window)
// and a run of requests over three shared prefixes (so prefix hits and node splits happen),
// some of n choices, some with min_tokens, EOS or prompt log-probabilities, aborted at random
// between steps (under asynchronous scheduling, mid-flight). Every step checks the scheduler's
// and the prefix tree's invariants (EngineConfig::check_invariants). At the end nothing is left
// running, every request finished once with nothing after its finish, no page is in use, and
// each output equals greedy decoding of its prompt by the fake model (fake_model.h), whose
// logits depend on the whole history: a wrong page, slot or position changes them. With a
// streaming window outputs are not compared (the window changes what the model sees).
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "engine/sampling.h"
#include "fake_engine.h"
#include "fake_model.h"
#include "nanocascade/engine.h"

namespace nc::test_engine_random_mix {
namespace {

// Greedy decoding of `seq` by the fake model, as the engine does it: EOS ends the output unless
// ignored, and is masked for the first min_tokens tokens.
std::vector<int32_t> greedy_reference(std::vector<int32_t> seq, const SamplingParams& p) {
  std::vector<int32_t> out;
  while (int(out.size()) < p.max_tokens) {
    std::vector<float> logits = fake::reference_logits(seq, kFakeVocab);
    if (!p.ignore_eos && int(out.size()) < p.min_tokens) logits[fake::FakeCodec::kEos] = -1e30f;
    const int32_t t = argmax(logits);
    out.push_back(t);
    seq.push_back(t);
    if (!p.ignore_eos && t == fake::FakeCodec::kEos) break;
  }
  return out;
}

struct MixConfig {
  EngineConfig engine;
  Sampling sampling = Sampling::Host;
  int max_positions = 0;
};

MixConfig draw_config(std::mt19937& r, bool with_window) {
  static constexpr Sampling kModes[] = {Sampling::Host, Sampling::Device, Sampling::DeviceAsync};
  MixConfig m;
  EngineConfig& c = m.engine;
  c.page_size = 1 + int(r() % 16);
  c.max_num_batched_tokens = 8 + int(r() % 200);
  c.max_num_seqs = 1 + int(r() % 8);
  const int64_t slot_bytes = int64_t(c.page_size) * 8;  // the fake model's 8 bytes a slot
  c.kv_cache_memory = std::to_string((12 + r() % 60) * slot_bytes);
  if (r() % 2) c.host_kv_cache = std::to_string((r() % 40) * slot_bytes);
  m.sampling = kModes[r() % 3];
  c.async_scheduling = m.sampling == Sampling::DeviceAsync;
  c.check_invariants = true;
  m.max_positions = 20 + int(r() % 150);
  if (with_window) {
    const int ps = c.page_size;
    const int window = ps * (1 + int(r() % 4)) + int(r() % ps);
    c.streaming_sink_pages = int(r() % 2);
    // The window's pages, its sink and the page being written must fit the context.
    if ((c.streaming_sink_pages + (window + ps - 1) / ps + 1) * ps <= m.max_positions)
      c.streaming_window = window;
  }
  return m;
}

struct Submitted {
  std::vector<int32_t> prompt;
  SamplingParams params;
  std::vector<int32_t> output;
  bool aborted = false, finished = false;
};

void run_mix(uint32_t seed, bool with_window) {
  std::mt19937 r(seed * 7 + 1), rng(seed);
  const MixConfig m = draw_config(r, with_window);
  const EngineConfig& c = m.engine;
  SCOPED_TRACE(::testing::Message()
               << "seed " << seed << ": page " << c.page_size << ", budget "
               << c.max_num_batched_tokens << ", pool " << c.kv_cache_memory << " B, seqs "
               << c.max_num_seqs << ", sampling " << int(m.sampling) << ", host tier '"
               << c.host_kv_cache << "', positions " << m.max_positions << ", window "
               << c.streaming_window);
  Engine e(
      c,
      std::make_unique<fake::FakeModel>(kFakeVocab, m.max_positions, m.sampling != Sampling::Host),
      std::make_unique<fake::FakeCodec>());
  std::vector<std::vector<int32_t>> prefixes(3);
  for (auto& p : prefixes) {
    p.resize(rng() % 70);
    for (int32_t& t : p) t = int32_t(rng() % 256);
  }
  std::map<RequestId, Submitted> reqs;
  auto take = [&](const std::vector<RequestOutput>& outs) {
    for (const RequestOutput& o : outs) {
      Submitted& s = reqs[o.id];
      EXPECT_FALSE(s.finished) << "output after the finish of request " << o.id;
      s.output.insert(s.output.end(), o.new_token_ids.begin(), o.new_token_ids.end());
      s.finished = s.finished || o.finished;
    }
  };
  int added = 0;
  for (int iter = 0; iter < 400; ++iter) {
    if (added < 40 && rng() % 3 == 0) {
      std::vector<int32_t> prompt = prefixes[rng() % 3];
      for (int i = 0, n = 1 + int(rng() % 40); i < n; ++i) prompt.push_back(int32_t(rng() % 258));
      SamplingParams sp = greedy(1 + int(rng() % 30));
      sp.ignore_eos = rng() % 2;
      if (rng() % 4 == 0) sp.min_tokens = int(rng() % 5);
      if (rng() % 5 == 0) sp.prompt_logprobs = 0;
      const int n = rng() % 4 == 0 ? 2 + int(rng() % 3) : 1;
      try {
        const std::vector<RequestId> ids = n > 1
                                               ? e.add_requests(prompt, sp, n)
                                               : std::vector<RequestId>{e.add_request(prompt, sp)};
        for (RequestId id : ids) reqs[id] = Submitted{prompt, sp, {}, false, false};
        added += n;
      } catch (const Error&) {
        // Refused (a prompt over the context): nothing was accepted.
      }
    }
    if (!reqs.empty() && rng() % 10 == 0) {
      auto it = std::next(reqs.begin(), long(rng() % reqs.size()));
      if (!it->second.finished) {
        e.abort(it->first);
        it->second.aborted = true;
      }
    }
    if (e.has_unfinished()) take(e.step());
  }
  for (int guard = 0; e.has_unfinished() && guard < 5000; ++guard) take(e.step());
  EXPECT_FALSE(e.has_unfinished()) << "requests stuck";
  for (const auto& [id, s] : reqs) {
    EXPECT_TRUE(s.finished) << "request " << id << " never finished";
    if (c.streaming_window > 0) continue;
    std::vector<int32_t> want = greedy_reference(s.prompt, s.params);
    if (s.aborted) want.resize(std::min(want.size(), s.output.size()));
    EXPECT_EQ(s.output, want) << "request " << id;
  }
  EXPECT_EQ(e.stats().used_pages, 0) << "pages leaked";
}

constexpr int kSeeds = 150;  // ~3 ms a run (Release)

TEST(EngineRandomMix, MatchesTheReferenceAndKeepsInvariants) {
  for (int seed = 0; seed < kSeeds && !HasFailure(); ++seed) run_mix(uint32_t(seed), false);
}

TEST(EngineRandomMix, StreamingWindowKeepsInvariants) {
  for (int seed = 0; seed < kSeeds && !HasFailure(); ++seed) run_mix(uint32_t(seed), true);
}

}  // namespace
}  // namespace nc::test_engine_random_mix

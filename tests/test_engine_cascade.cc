// The engine with the prefix cache and cascade attention, end to end over a token-level fake
// model that understands multi-level attention: every slot stores its token and position, and a
// logit row gathers the keys it sees through ALL levels (non-causal shared levels, the causal
// own level), which must be exactly positions 0..p of its own sequence, once each. The logits
// are a hash of that history, so any paging, matching, ordering or level mistake changes the
// generated tokens. References come from fake::reference_logits over the plain token list.
// (The same scenarios over the real decoder and tiny fixture models:
// test_engine_cascade_models.cc.)
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "backend/backend.h"
#include "engine/sampling.h"
#include "fake_model.h"
#include "nanocascade/engine.h"

namespace nc {
namespace test_engine_cascade {

constexpr int kVocab = 300;

class CascadeFakeModel : public StepModel {
 public:
  explicit CascadeFakeModel(std::vector<int>* levels_per_step) : levels_(levels_per_step) {}
  int vocab_size() const override { return kVocab; }
  int max_position() const override { return 4096; }
  bool on_cuda() const override { return false; }
  int64_t kv_bytes_per_page(int page_size) const override { return int64_t(page_size) * 8; }
  void allocate_kv(int num_pages, int page_size, KVLayout) override {
    ps_ = page_size;
    num_pages_ = num_pages;
    slots_.assign(size_t(num_pages) * page_size, Slot{});
  }

  std::vector<float> forward(const ForwardInput& in) override {
    const int T = int(in.token_ids.size());
    const auto& levels = in.attention.levels;
    NC_CHECK(!levels.empty() && in.attention.num_tokens == T, "fake: bad step");
    for (size_t l = 0; l < levels.size(); ++l) {
      levels[l].validate(T, ps_, num_pages_);
      NC_CHECK(levels[l].causal == (l + 1 == levels.size()), "fake: level {} causal flag", l);
    }
    if (levels_) levels_->push_back(int(levels.size()));
    const PagedKVBatch& own = levels.back();
    for (int e = 0; e < own.batch_size(); ++e) {  // append into the own level's last slots
      const int q = own.q_len(e), kv = own.kv_len(e, ps_);
      for (int i = 0; i < q; ++i) {
        const int row = own.qo_indptr[e] + i;
        slot(own, e, kv - q + i) = Slot{in.token_ids[row], in.positions[row]};
      }
    }
    std::vector<float> out(in.logit_rows.size() * size_t(kVocab));
    for (size_t k = 0; k < in.logit_rows.size(); ++k) {
      const int row = in.logit_rows[k];
      std::vector<Slot> seen;
      for (const PagedKVBatch& b : levels) {
        const int e = int(std::upper_bound(b.qo_indptr.begin(), b.qo_indptr.end(), row) -
                          b.qo_indptr.begin()) -
                      1;
        const int kv = b.kv_len(e, ps_);
        const int visible = b.causal ? kv - b.q_len(e) + (row - b.qo_indptr[e]) + 1 : kv;
        for (int p = 0; p < visible; ++p) seen.push_back(slot(b, e, p));
      }
      std::sort(seen.begin(), seen.end(),
                [](const Slot& a, const Slot& b) { return a.pos < b.pos; });
      NC_CHECK(int(seen.size()) == in.positions[row] + 1,
               "fake: row {} at position {} sees {} keys", row, in.positions[row], seen.size());
      std::vector<int32_t> hist;
      for (int p = 0; p < int(seen.size()); ++p) {
        NC_CHECK(seen[p].pos == p, "fake: row {} sees position {} where {} belongs", row,
                 seen[p].pos, p);
        hist.push_back(seen[p].token);
      }
      fake::history_logits(fake::history_hash(hist.data(), hist.size()), kVocab,
                           out.data() + k * kVocab);
    }
    return out;
  }

 private:
  struct Slot {
    int32_t token = -1;
    int32_t pos = -1;
  };
  Slot& slot(const PagedKVBatch& b, int e, int pos) {
    const int page = b.kv_indices[b.kv_indptr[e] + pos / ps_];
    return slots_[size_t(page) * ps_ + pos % ps_];
  }
  std::vector<int>* levels_;
  int ps_ = 0, num_pages_ = 0;
  std::vector<Slot> slots_;
};

struct EngineSetup {
  bool cache = true;
  bool cascade = true;
  int page_size = 4;
  int budget = 512;
  int pages = 4096;
};

EngineSetup setup(bool cache, bool cascade, int page_size, int budget, int pages = 4096) {
  EngineSetup s;
  s.cache = cache;
  s.cascade = cascade;
  s.page_size = page_size;
  s.budget = budget;
  s.pages = pages;
  return s;
}

std::unique_ptr<Engine> make_engine(const EngineSetup& s, std::vector<int>* levels = nullptr) {
  EngineConfig cfg;
  cfg.page_size = s.page_size;
  cfg.max_num_batched_tokens = s.budget;
  cfg.kv_cache_memory = std::to_string(int64_t(s.pages) * s.page_size * 8);
  cfg.enable_prefix_cache = s.cache;
  cfg.enable_cascade = s.cascade;
  cfg.cascade_force = s.cascade;  // the CPU never pays for a level: force them to test them
  return std::make_unique<Engine>(cfg, std::make_unique<CascadeFakeModel>(levels),
                                  std::make_unique<fake::FakeCodec>());
}

std::vector<int32_t> reference_greedy(std::vector<int32_t> seq, int max_tokens) {
  std::vector<int32_t> out;
  while (int(out.size()) < max_tokens) {
    const int32_t t = argmax(fake::reference_logits(seq, kVocab));
    out.push_back(t);
    seq.push_back(t);
  }
  return out;
}

SamplingParams greedy(int max_tokens) {
  return fake::greedy_ignoring_eos(max_tokens);
}

std::vector<int32_t> random_tokens(std::mt19937& rng, int n) {
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = int32_t(rng() % 256);
  return t;
}

std::vector<int32_t> cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Prompts that share system prompts and questions at several depths.
std::vector<std::vector<int32_t>> shared_prompts(uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> sys{random_tokens(rng, 37), random_tokens(rng, 20)};
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < 28; ++i) {
    std::vector<int32_t> p = sys[rng() % 2];
    if (rng() % 2) p = cat(p, std::vector<int32_t>(9, int32_t(rng() % 3)));  // a shared question
    out.push_back(cat(p, random_tokens(rng, 1 + int(rng() % 12))));
  }
  // Exact duplicates and a prompt that is a prefix of another.
  out.push_back(out[0]);
  out.push_back(std::vector<int32_t>(out[1].begin(), out[1].end() - 1));
  return out;
}

TEST(EngineCascade, GreedyTokensIdenticalWithCacheAndCascadeOnOrOff) {
  const auto prompts = shared_prompts(5);
  std::vector<std::vector<int32_t>> expected;
  for (const auto& p : prompts) expected.push_back(reference_greedy(p, 12));
  for (int ps : {1, 4, 16}) {
    for (int budget : {24, 512}) {
      for (int mask = 0; mask < 4; ++mask) {
        const EngineSetup s = setup(mask & 1, mask & 2, ps, budget);
        SCOPED_TRACE(::testing::Message() << "page " << ps << " budget " << budget << " cache "
                                          << s.cache << " cascade " << s.cascade);
        std::vector<int> levels;
        auto e = make_engine(s, &levels);
        // Two waves: the second finds the first's prefixes cached.
        const size_t half = prompts.size() / 2;
        const std::vector<std::vector<int32_t>> w1(prompts.begin(), prompts.begin() + half),
            w2(prompts.begin() + half, prompts.end());
        auto out = e->generate(w1, greedy(12));
        const auto out2 = e->generate(w2, greedy(12));
        out.insert(out.end(), out2.begin(), out2.end());
        for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(out[i].token_ids, expected[i]) << i;
        const EngineStats st = e->stats();
        EXPECT_EQ(st.used_pages, 0);
        EXPECT_EQ(st.cache.free_pages + st.cache.cached_only_pages, st.total_pages);
        if (s.cache) {
          EXPECT_GT(st.cache.hit_tokens, 0);
        } else {
          EXPECT_EQ(st.cache.hit_tokens, 0);
          EXPECT_EQ(st.cached_pages, 0);
        }
        // Cascade levels appear only where pages are shared, i.e. with the cache.
        const int most = *std::max_element(levels.begin(), levels.end());
        if (s.cache && s.cascade) {
          EXPECT_GE(most, 2);
          EXPECT_LT(st.cache.kv_bytes_cascade, st.cache.kv_bytes_plain);
        } else {
          EXPECT_EQ(most, 1);
        }
      }
    }
  }
}

TEST(EngineCascade, PreemptionAndEvictionUnderASmallPool) {
  const auto prompts = shared_prompts(9);
  std::vector<std::vector<int32_t>> expected;
  for (const auto& p : prompts) expected.push_back(reference_greedy(p, 16));
  for (bool cascade : {false, true}) {
    const EngineSetup s = setup(true, cascade, 4, 64, 40);
    auto e = make_engine(s);
    const auto out = e->generate(prompts, greedy(16));
    for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(out[i].token_ids, expected[i]) << i;
    const EngineStats st = e->stats();
    EXPECT_GT(st.num_preemptions, 0);
    EXPECT_GT(st.cache.evicted_pages, 0);
    EXPECT_EQ(st.used_pages, 0);
    EXPECT_EQ(st.free_pages + st.cached_pages, st.total_pages);
  }
}

// One system prompt, 8 conversations, 4 turns. Each turn every conversation sends its history
// plus a new user message, and a second variant of that message (a "regenerate"), so three
// levels exist: the system prompt (all requests), the conversation's history (its two
// requests), and each request's own tokens. Only the first variant's answer continues the
// conversation.
TEST(EngineCascade, MultiTurnConversationsHitSystemPromptAndHistory) {
  const int ps = 4, answer = 8, turns = 4, convs = 8;
  std::mt19937 rng(77);
  const std::vector<int32_t> sys = cat({fake::FakeCodec::kBos}, random_tokens(rng, 47));
  std::vector<std::vector<int32_t>> history(convs, sys);
  std::vector<int> levels;
  auto e = make_engine(setup(true, true, ps, 4096), &levels);
  int64_t expected_hits = 0, looked_up = 0;
  std::vector<int64_t> prev_computed(convs, 0);  // tokens with K/V after the previous turn
  for (int t = 0; t < turns; ++t) {
    std::vector<std::vector<int32_t>> prompts;
    for (int c = 0; c < convs; ++c) {
      for (int v = 0; v < 2; ++v) {
        prompts.push_back(cat(history[c], random_tokens(rng, 3 + int(rng() % 6))));
        looked_up += int64_t(prompts.back().size());
        // In the first turn the first request computes the system prompt and the others wait
        // for its prefill (the scheduler's in-batch prefix caching), then find it. Later the
        // whole turn is admitted in one step (the budget holds it), so a request finds what
        // earlier turns left: its conversation's previous prompt + answer, whose last token
        // never had K/V computed; whole pages only, and never its own last token.
        if (t == 0 && prompts.size() > 1) {
          expected_hits += int64_t(sys.size()) / ps * ps;
        } else if (t > 0) {
          const int64_t usable = std::min<int64_t>(prev_computed[c], prompts.back().size() - 1);
          expected_hits += usable / ps * ps;
        }
      }
    }
    const auto outs = e->generate(prompts, greedy(answer));
    for (int c = 0; c < convs; ++c) {
      const auto& main = prompts[2 * c];
      EXPECT_EQ(outs[2 * c].token_ids, reference_greedy(main, answer));
      EXPECT_EQ(outs[2 * c + 1].token_ids, reference_greedy(prompts[2 * c + 1], answer));
      prev_computed[c] = int64_t(main.size()) + answer - 1;
      history[c] = cat(main, outs[2 * c].token_ids);
    }
  }
  const EngineStats st = e->stats();
  EXPECT_EQ(st.cache.lookup_tokens, looked_up);
  EXPECT_EQ(st.cache.hit_tokens, expected_hits);
  EXPECT_GT(st.cache.hit_rate, 0.6);
  EXPECT_EQ(st.cache.max_levels, 3);  // system prompt, history, own
  EXPECT_LT(st.cache.kv_bytes_cascade, st.cache.kv_bytes_plain);
  std::printf(
      "[ multi-turn ] prefix-cache hit rate %.3f (%lld of %lld prompt tokens), KV bytes "
      "read %.0f with cascade vs %.0f plain, %lld of %lld steps cascaded, %d levels at "
      "most\n",
      st.cache.hit_rate, (long long)st.cache.hit_tokens, (long long)st.cache.lookup_tokens,
      st.cache.kv_bytes_cascade, st.cache.kv_bytes_plain, (long long)st.cache.cascade_steps,
      (long long)st.num_steps, st.cache.max_levels);
}

TEST(EngineCascade, PageAccountingByState) {
  auto e = make_engine(setup(true, true, 4, 4096));
  std::vector<int32_t> sys(40, 5);
  e->generate({cat(sys, {1, 2})}, greedy(2));  // caches 10 pages of the system prompt
  EngineStats st = e->stats();
  EXPECT_EQ(st.cache.cached_only_pages, st.cached_pages);
  EXPECT_EQ(st.cache.tree_pages, 10);
  EXPECT_EQ(st.cache.private_pages + st.cache.shared_pages, 0);
  e->add_request(cat(sys, {3}), greedy(4));
  e->add_request(cat(sys, {4}), greedy(4));
  e->step();  // both admitted: 10 shared pages and one private page each
  st = e->stats();
  EXPECT_EQ(st.cache.shared_pages, 10);
  EXPECT_EQ(st.cache.private_pages, 2);
  EXPECT_EQ(st.cache.free_pages + st.cache.private_pages + st.cache.shared_pages +
                st.cache.cached_only_pages,
            st.total_pages);
  ASSERT_EQ(st.cache.last_step_pages_per_level.size(), 2u);
  EXPECT_EQ(st.cache.last_step_pages_per_level[0], 10);  // read once for both
  EXPECT_EQ(st.cache.last_step_pages_per_level[1], 2);
  // KV read this step: 2 x 41 tokens plain, 40 + 2 x 1 with cascade (8 bytes per token here).
  EXPECT_EQ(st.cache.last_step_kv_bytes_plain, 2 * 41 * 8);
  EXPECT_EQ(st.cache.last_step_kv_bytes_cascade, (40 + 2) * 8);
  while (e->has_unfinished()) e->step();
}

// Requests sent together with one system prompt: the first computes it, the others wait for
// its prefill and find it in the cache (without waiting they would all be admitted in the
// first step and each compute its own copy).
TEST(EngineCascade, RequestsSentTogetherComputeASharedPromptOnce) {
  std::mt19937 rng(3);
  const std::vector<int32_t> sys = random_tokens(rng, 64);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back(cat(sys, random_tokens(rng, 5)));
  std::vector<int32_t> other = random_tokens(rng, 30);  // shares nothing: admitted at once
  prompts.push_back(other);
  // Budget 16: the first prompt's prefill takes 5 steps, and the others wait through all of them.
  for (auto [cascade, budget] : {std::pair{false, 4096}, {true, 4096}, {false, 16}, {true, 16}}) {
    SCOPED_TRACE(::testing::Message() << "cascade " << cascade << " budget " << budget);
    auto e = make_engine(setup(true, cascade, 4, budget));
    const auto out = e->generate(prompts, greedy(6));
    for (size_t i = 0; i < prompts.size(); ++i)
      EXPECT_EQ(out[i].token_ids, reference_greedy(prompts[i], 6)) << i;
    const EngineStats st = e->stats();
    EXPECT_EQ(st.cache.hit_tokens, 7 * 64);  // the system prompt's 16 pages, for 7 requests
    EXPECT_EQ(st.num_prompt_tokens_computed, 64 + 8 * 5 + 30);
    EXPECT_EQ(st.used_pages, 0);
  }
}

}  // namespace test_engine_cascade
}  // namespace nc

// 128k-token requests (issue #13): how the scheduler shares a step's token budget between a
// prompt computed in chunks and short requests (they must not wait for the long prefill), the
// whole path of a 131k-token prompt through the engine (fake token-level model: every paging or
// position mistake changes its tokens), and the context limits (clear errors past the model's
// maximum). The real decoder at Llama-3.1's context (tiny shape, dummy weights) is in
// test_long_context_model.cc.
#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "core/error.h"
#include "engine/sampling.h"
#include "engine/scheduler.h"
#include "fake_model.h"
#include "nanocascade/engine.h"

namespace nc {
namespace test_long_context {

constexpr int kVocab = 300;
constexpr int kLongContext = 131072;

// A scheduler driven without a model: after each step a request that has computed all its
// tokens "samples" one; it finishes after max_tokens outputs. Records the step of each
// request's first token and every step it was scheduled in.
struct SchedulerSim {
  PagePool pool;
  Scheduler sched;
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::map<int64_t, int> max_tokens, first_token_step, added_step;
  std::map<int64_t, std::vector<int>> scheduled_steps;  // (request, tokens) per step
  int step_no = 0;

  SchedulerSim(const SchedulerConfig& cfg, int pages) : pool(pages), sched(cfg, pool) {}

  Sequence* add(int prompt_len, int out) {
    auto s = std::make_unique<Sequence>();
    s->id = int64_t(seqs.size());
    s->tokens.assign(size_t(prompt_len), 7);
    s->num_prompt = prompt_len;
    s->max_kv_tokens = prompt_len + out - 1;
    max_tokens[s->id] = out;
    added_step[s->id] = step_no;
    sched.add(s.get());
    seqs.push_back(std::move(s));
    return seqs.back().get();
  }

  ScheduleResult step() {
    ++step_no;
    ScheduleResult r = sched.schedule();
    sched.check_invariants();
    EXPECT_LE(r.num_tokens, sched.config().max_num_batched_tokens);
    sched.commit(r);
    for (const ScheduledSeq& e : r.scheduled) {
      Sequence* s = e.seq;
      scheduled_steps[s->id].push_back(step_no);
      if (s->num_computed < s->num_tokens()) continue;  // prefill chunk: no token yet
      s->tokens.push_back(9);
      if (!first_token_step.count(s->id)) first_token_step[s->id] = step_no;
      if (s->num_output() >= max_tokens[s->id]) sched.finish(s);
    }
    return r;
  }
};

SchedulerConfig config_2048() {
  SchedulerConfig cfg;
  cfg.page_size = 16;
  cfg.max_num_batched_tokens = 2048;
  return cfg;
}

TEST(LongContextScheduler, ShortRequestsAreNotStalledByA128kPrefill) {
  const SchedulerConfig cfg = config_2048();
  SchedulerSim sim(cfg, kLongContext / 16 + 1024);
  Sequence* lng = sim.add(kLongContext - 8, 8);
  for (int i = 0; i < 3; ++i) sim.step();
  // Alone, the long prompt gets the whole budget each step.
  EXPECT_EQ(lng->num_computed, 3 * cfg.max_num_batched_tokens);
  std::vector<Sequence*> shorts;
  for (int i = 0; i < 32; ++i) shorts.push_back(sim.add(100, 20));
  const int arrival = sim.step_no;
  while (lng->num_computed < lng->num_prompt) {
    const ScheduleResult r = sim.step();
    // The prefill advances every step by at least its chunk; no budget is left unused.
    int long_tokens = 0;
    for (const ScheduledSeq& e : r.scheduled)
      if (e.seq == lng) long_tokens = e.num_new;
    EXPECT_GE(long_tokens, std::min(cfg.max_num_batched_tokens / 4, lng->remaining() + long_tokens))
        << "step " << sim.step_no;
    if (lng->num_computed < lng->num_prompt) {
      EXPECT_EQ(r.num_tokens, cfg.max_num_batched_tokens) << "step " << sim.step_no;
    }
    ASSERT_LT(sim.step_no, 200) << "the long prefill does not finish";
  }
  // 32 x 100 prompt tokens beside 512-token chunks of the long prompt: 3 steps at most.
  for (Sequence* s : shorts) {
    ASSERT_TRUE(sim.first_token_step.count(s->id)) << "request " << s->id << " got no token";
    EXPECT_LE(sim.first_token_step[s->id] - arrival, 3) << "request " << s->id;
    EXPECT_EQ(s->status, SeqStatus::Finished) << "request " << s->id;
    // From its first token on it decoded every step until it finished.
    const std::vector<int>& st = sim.scheduled_steps[s->id];
    const auto first = std::find(st.begin(), st.end(), sim.first_token_step[s->id]);
    ASSERT_NE(first, st.end());
    EXPECT_EQ(st.end() - first, 20) << "request " << s->id;
    EXPECT_EQ(st.back() - *first, 19) << "request " << s->id << " skipped a step";
  }
  EXPECT_LT(sim.first_token_step[shorts.back()->id], sim.step_no - 50)
      << "the short requests waited for the long prefill";
}

TEST(LongContextScheduler, ShortRequestBehindLongPromptsInTheQueueStartsInTheFirstStep) {
  SchedulerConfig cfg = config_2048();
  cfg.long_prefill_chunk = 256;
  SchedulerSim sim(cfg, 3 * 40000 / 16 + 64);
  for (int i = 0; i < 3; ++i) sim.add(40000, 4);
  Sequence* s = sim.add(50, 2);
  sim.step();
  // 3 x 256 for the long prompts, then the short one's 50: it has its first token already.
  EXPECT_EQ(sim.first_token_step[s->id], 1);
  // The rest of the budget went to the first long prompt (admission order).
  EXPECT_EQ(sim.seqs[0]->num_computed, 2048 - 2 * 256 - 50);
  EXPECT_EQ(sim.seqs[1]->num_computed, 256);
  EXPECT_EQ(sim.seqs[2]->num_computed, 256);
}

TEST(LongContextScheduler, NegativeChunkIsAnError) {
  SchedulerConfig cfg = config_2048();
  cfg.long_prefill_chunk = -1;
  PagePool pool(16);
  try {
    Scheduler sched(cfg, pool);
    FAIL() << "a negative long_prefill_chunk was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("-1"), std::string::npos) << e.what();
  }
}

std::unique_ptr<Engine> fake_128k_engine() {
  EngineConfig cfg;
  cfg.max_num_batched_tokens = 2048;
  cfg.max_num_seqs = 64;
  cfg.check_invariants = false;  // walks every page each step: slow at 8k pages
  cfg.kv_cache_memory = std::to_string(int64_t(kLongContext / 16 + 512) * 16 * 8);
  return std::make_unique<Engine>(cfg, std::make_unique<fake::FakeModel>(kVocab, kLongContext),
                                  std::make_unique<fake::FakeCodec>());
}

std::vector<int32_t> reference_greedy(std::vector<int32_t> seq, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(argmax(fake::reference_logits(seq, kVocab)));
    seq.push_back(out.back());
  }
  return out;
}

std::vector<int32_t> prompt_of(int n, uint32_t seed) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) p[size_t(i)] = int32_t((uint32_t(i) * 2654435761u + seed) % 256);
  return p;
}

TEST(LongContextEngine, PromptOf131kTokensBesideShortRequests) {
  auto engine = fake_128k_engine();
  EXPECT_EQ(engine->stats().max_model_len, kLongContext);
  const std::vector<int32_t> long_prompt = prompt_of(kLongContext - 4, 1);
  const RequestId lng = engine->add_request(long_prompt, fake::greedy_ignoring_eos(4));
  std::map<RequestId, std::vector<int32_t>> got;
  std::map<RequestId, int> first_step;
  int step = 0;
  auto run_step = [&] {
    ++step;
    for (const RequestOutput& o : engine->step()) {
      if (!o.new_token_ids.empty() && !first_step.count(o.id)) first_step[o.id] = step;
      got[o.id].insert(got[o.id].end(), o.new_token_ids.begin(), o.new_token_ids.end());
    }
  };
  run_step();
  run_step();
  std::map<RequestId, std::vector<int32_t>> short_prompts;
  for (int i = 0; i < 16; ++i) {
    const std::vector<int32_t> p = prompt_of(60 + i, 100 + uint32_t(i));
    short_prompts[engine->add_request(p, fake::greedy_ignoring_eos(8))] = p;
  }
  const int arrival = step;
  while (engine->has_unfinished()) {
    run_step();
    ASSERT_LT(step, 300);
  }
  EXPECT_EQ(got[lng], reference_greedy(long_prompt, 4));
  for (const auto& [id, p] : short_prompts) {
    EXPECT_EQ(got[id], reference_greedy(p, 8)) << "request " << id;
    EXPECT_LE(first_step[id] - arrival, 3) << "request " << id;
    EXPECT_LT(first_step[id], first_step[lng] - 40) << "request " << id;
  }
}

TEST(LongContextEngine, ContextBeyondTheModelsMaximumIsAClearError) {
  auto engine = fake_128k_engine();
  auto expect_context_error = [&](int prompt_len, int max_tokens) {
    try {
      engine->add_request(prompt_of(prompt_len, 3), fake::greedy_ignoring_eos(max_tokens));
      ADD_FAILURE() << prompt_len << " + " << max_tokens << " tokens were accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::ContextLength) << e.what();
      EXPECT_NE(std::string(e.what()).find("131072"), std::string::npos) << e.what();
    }
  };
  expect_context_error(kLongContext, 1);
  expect_context_error(kLongContext + 100, 1);
  expect_context_error(kLongContext - 10, 11);
  EXPECT_FALSE(engine->has_unfinished());
  // A max_model_len past the model's maximum is refused when the engine is made.
  EngineConfig cfg;
  cfg.max_model_len = kLongContext + 1;
  try {
    Engine e(cfg, std::make_unique<fake::FakeModel>(kVocab, kLongContext),
             std::make_unique<fake::FakeCodec>());
    ADD_FAILURE() << "max_model_len past the model's maximum was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find("131073"), std::string::npos) << e.what();
  }
}

}  // namespace test_long_context
}  // namespace nc

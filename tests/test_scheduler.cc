// The scheduler and step plans, driven directly with the fake token-level model: the "engine"
// here appends the fake model's greedy token, so every run must reproduce the reference chain
// computed without any paging.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>

#include "core/error.h"
#include "engine/sampling.h"
#include "engine/scheduler.h"
#include "engine/step_plan.h"
#include "fake_model.h"

namespace nc {
namespace test_scheduler {

constexpr int kVocab = 300;

// Greedy continuation of `prompt` by n tokens, straight from the reference logits.
std::vector<int32_t> reference_output(std::vector<int32_t> seq, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    const int32_t t = argmax(fake::reference_logits(seq, kVocab));
    out.push_back(t);
    seq.push_back(t);
  }
  return out;
}

struct Job {
  std::vector<int32_t> prompt;
  int max_tokens;
};

std::vector<Job> random_jobs(int n, int max_prompt, int max_out, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Job> jobs;
  for (int i = 0; i < n; ++i) {
    Job j;
    j.prompt.resize(1 + rng() % max_prompt);
    for (int32_t& t : j.prompt) t = int32_t(rng() % kVocab);
    j.max_tokens = 1 + int(rng() % max_out);
    jobs.push_back(j);
  }
  return jobs;
}

struct RunResult {
  std::vector<std::vector<int32_t>> outputs;
  std::vector<fake::FakeStepStats> steps;
  int64_t preemptions = 0;
};

// A minimal engine loop over scheduler + plan + fake model, checking invariants every step.
RunResult run(const std::vector<Job>& jobs, SchedulerConfig cfg, int num_pages) {
  PagePool pool(num_pages);
  Scheduler sched(cfg, pool);
  fake::FakeModel model(kVocab, 1 << 20);
  model.allocate_kv(num_pages, cfg.page_size, KVLayout::NHD);
  std::vector<std::unique_ptr<Sequence>> seqs;
  for (size_t i = 0; i < jobs.size(); ++i) {
    auto s = std::make_unique<Sequence>();
    s->id = int64_t(i);
    s->tokens = jobs[i].prompt;
    s->num_prompt = int(jobs[i].prompt.size());
    s->max_kv_tokens = s->num_prompt + jobs[i].max_tokens - 1;
    sched.add(s.get());
    seqs.push_back(std::move(s));
  }
  int guard = 0;
  while (sched.has_work()) {
    EXPECT_LT(++guard, 100000) << "no progress";
    if (guard >= 100000) break;
    ScheduleResult sr = sched.schedule();
    sched.check_invariants();
    EXPECT_FALSE(sr.empty()) << "a step with work scheduled nothing";
    EXPECT_LE(sr.num_tokens, cfg.max_num_batched_tokens);
    EXPECT_LE(sched.num_running(), cfg.max_num_seqs);
    StepPlan plan = build_step_plan(sr, cfg.page_size);
    const std::vector<float> logits = model.forward(plan.input);
    sched.commit(sr);
    for (size_t k = 0; k < plan.sample_entries.size(); ++k) {
      Sequence* s = plan.entries[plan.sample_entries[k]].seq;
      s->tokens.push_back(argmax(std::span<const float>(logits).subspan(k * kVocab, kVocab)));
      if (s->num_output() >= jobs[s->id].max_tokens) sched.finish(s);
    }
    sched.check_invariants();
  }
  pool.check_invariants();
  EXPECT_EQ(pool.num_free(), pool.num_pages()) << "pages leaked";
  RunResult r;
  for (auto& s : seqs) {
    EXPECT_EQ(s->status, SeqStatus::Finished);
    r.outputs.emplace_back(s->tokens.begin() + s->num_prompt, s->tokens.end());
  }
  r.steps = model.steps;
  r.preemptions = sched.num_preemptions();
  return r;
}

void expect_reference(const std::vector<Job>& jobs, const RunResult& r) {
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_EQ(r.outputs[i], reference_output(jobs[i].prompt, jobs[i].max_tokens)) << "job " << i;
  }
}

TEST(Scheduler, MatchesReferenceUnderBudgetsAndPageSizes) {
  const auto jobs = random_jobs(24, 90, 20, 1);
  for (int page : {1, 4, 16, 64}) {
    for (int budget : {7, 32, 512}) {
      SCOPED_TRACE(::testing::Message() << "page " << page << " budget " << budget);
      const RunResult r = run(jobs, {page, budget, 256}, 4096);
      expect_reference(jobs, r);
      EXPECT_EQ(r.preemptions, 0);
      for (const auto& st : r.steps) EXPECT_LE(st.num_tokens, budget);
    }
  }
}

TEST(Scheduler, ChunkedPrefillSplitsALongPrompt) {
  const std::vector<Job> jobs = {{std::vector<int32_t>(100, 7), 3}};
  const RunResult r = run(jobs, {16, 16, 8}, 64);
  expect_reference(jobs, r);
  // 100 prompt tokens in chunks of 16: 7 steps, logits only from the last; then 2 decodes.
  ASSERT_EQ(r.steps.size(), 9u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(r.steps[i].num_tokens, 16);
    EXPECT_EQ(r.steps[i].num_logit_rows, 0);
  }
  EXPECT_EQ(r.steps[6].num_tokens, 4);
  EXPECT_EQ(r.steps[6].num_logit_rows, 1);
  EXPECT_EQ(r.steps[7].num_tokens, 1);
}

TEST(Scheduler, DecodesComeFirstAndMixWithPrefills) {
  // A short request decodes while a long one is still being prefilled in chunks.
  const std::vector<Job> jobs = {{std::vector<int32_t>(4, 1), 10},
                                 {std::vector<int32_t>(200, 2), 2}};
  const RunResult r = run(jobs, {16, 32, 8}, 128);
  expect_reference(jobs, r);
  // The long prompt's chunks are 28, 31, ..., 17 tokens: q_len 1 is always a decode here.
  bool mixed = false;
  for (const auto& st : r.steps) {
    bool seen_prefill = false;
    for (int q : st.q_lens) {
      if (q == 1) {
        EXPECT_FALSE(seen_prefill) << "a decode after a prefill chunk in one step";
      }
      seen_prefill |= q > 1;
    }
    mixed |= seen_prefill && st.q_lens.front() == 1;
  }
  EXPECT_TRUE(mixed) << "no step mixed a decode with a prefill chunk";
  // The budget was filled: the first step takes 4 + 28 tokens.
  EXPECT_EQ(r.steps[0].num_tokens, 32);
}

TEST(Scheduler, MaxNumSeqsLimitsTheRunningSet) {
  const auto jobs = random_jobs(20, 10, 8, 2);
  const RunResult r = run(jobs, {4, 1000, 3}, 1024);
  expect_reference(jobs, r);
  for (const auto& st : r.steps) EXPECT_LE(st.num_seqs, 3);
}

TEST(Scheduler, PreemptionUnderATinyPoolCompletesEverything) {
  const auto jobs = random_jobs(32, 40, 30, 3);
  // Every job fits alone (<= 69 tokens = 18 pages of 4) but the pool holds 20 pages.
  for (int budget : {8, 64, 256}) {
    SCOPED_TRACE(budget);
    const RunResult r = run(jobs, {4, budget, 64}, 20);
    expect_reference(jobs, r);
    EXPECT_GT(r.preemptions, 0);
  }
}

TEST(Scheduler, PageSizeOneAndSingleSlotPool) {
  // The smallest possible pool for the job: exactly max_kv_tokens pages of 1 token.
  const std::vector<Job> jobs = {{{5, 6, 7}, 5}, {{9}, 4}, {{1, 2}, 6}};
  const RunResult r = run(jobs, {1, 3, 4}, 7);
  expect_reference(jobs, r);
}

TEST(Scheduler, RejectsARequestThatCannotFitAlone) {
  PagePool pool(4);
  Scheduler sched({16, 64, 8}, pool);
  Sequence s;
  s.tokens.assign(40, 1);
  s.num_prompt = 40;
  s.max_kv_tokens = 40 + 30 - 1;  // 69 tokens: 5 pages > 4
  try {
    sched.add(&s);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("KV pages"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(sched.has_work());
  EXPECT_THROW(Scheduler({0, 64, 8}, pool), Error);
  EXPECT_THROW(Scheduler({16, 0, 8}, pool), Error);
}

TEST(Scheduler, StepPlanShapesTheForwardInput) {
  PagePool pool(16);
  Scheduler sched({4, 64, 8}, pool);
  Sequence a, b;
  a.id = 0;
  a.tokens = {10, 11, 12, 13, 14, 15};
  a.num_prompt = 6;
  a.max_kv_tokens = 10;
  b.id = 1;
  b.tokens = {20, 21};
  b.num_prompt = 2;
  b.max_kv_tokens = 5;
  sched.add(&a);
  sched.add(&b);
  ScheduleResult sr = sched.schedule();
  StepPlan plan = build_step_plan(sr, 4);
  const ForwardInput& in = plan.input;
  EXPECT_EQ(in.token_ids, (std::vector<int32_t>{10, 11, 12, 13, 14, 15, 20, 21}));
  EXPECT_EQ(in.positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 0, 1}));
  EXPECT_EQ(in.logit_rows, (std::vector<int32_t>{5, 7}));
  ASSERT_EQ(in.attention.levels.size(), 1u);
  const PagedKVBatch& kv = in.attention.levels[0];
  EXPECT_TRUE(kv.causal);
  EXPECT_EQ(kv.qo_indptr, (std::vector<int32_t>{0, 6, 8}));
  EXPECT_EQ(kv.kv_indptr, (std::vector<int32_t>{0, 2, 3}));
  EXPECT_EQ(kv.kv_last_page_len, (std::vector<int32_t>{2, 2}));
  EXPECT_EQ(kv.kv_indices, (std::vector<int32_t>{a.pages[0], a.pages[1], b.pages[0]}));
  kv.validate(8, 4, 16);
  sched.commit(sr);
  // Next step: both decode one token at positions 6 and 2.
  a.tokens.push_back(16);
  b.tokens.push_back(22);
  sr = sched.schedule();
  plan = build_step_plan(sr, 4);
  EXPECT_EQ(plan.input.token_ids, (std::vector<int32_t>{16, 22}));
  EXPECT_EQ(plan.input.positions, (std::vector<int32_t>{6, 2}));
  EXPECT_EQ(plan.input.attention.levels[0].kv_last_page_len, (std::vector<int32_t>{3, 3}));
  EXPECT_EQ(plan.num_decode_tokens, 2);
  sched.commit(sr);
  sched.finish(&a);
  sched.finish(&b);
  sched.check_invariants();
  EXPECT_EQ(pool.num_free(), 16);
}

// Asynchronous scheduling: a request whose placeholder token (still being sampled) is its
// last by max_tokens gets no further step; a preempted request whose last token is a
// placeholder is not readmitted (and nobody overtakes it) until the token is known.
TEST(Scheduler, PlaceholdersOfAsynchronousScheduling) {
  PagePool pool(3);
  Scheduler sched({4, 64, 8}, pool);
  Sequence a, b;
  a.id = 0;
  a.tokens = {1, 2, 3};
  a.num_prompt = 3;
  a.max_kv_tokens = 3 + 2 - 1;  // max_tokens 2
  b.id = 1;
  b.tokens = {4, 5, 6, 7, 8};
  b.num_prompt = 5;
  b.max_kv_tokens = 5 + 6 - 1;
  sched.add(&a);
  sched.add(&b);
  // One step: schedule, commit, then the sampled rows become placeholders -1 - row while the
  // previous step's placeholders are resolved.
  auto step = [&](std::vector<Sequence*> expect) {
    ScheduleResult sr = sched.schedule();
    std::vector<Sequence*> got;
    for (const ScheduledSeq& x : sr.scheduled) got.push_back(x.seq);
    EXPECT_EQ(got, expect);
    const StepPlan plan = build_step_plan(sr, 4);
    sched.commit(sr);
    for (Sequence* x : {&a, &b})
      for (int32_t& t : x->tokens)
        if (t < 0) t = 100 + int32_t(x->id);
    for (size_t k = 0; k < plan.sample_entries.size(); ++k)
      plan.entries[size_t(plan.sample_entries[k])].seq->tokens.push_back(-1 - int32_t(k));
    sched.check_invariants();
    return plan;
  };
  step({&a, &b});  // prefills
  const StepPlan p2 = step({&a, &b});
  EXPECT_EQ(p2.input.token_ids, (std::vector<int32_t>{-1, -2}));  // decodes of the placeholders
  // a's placeholder is its second output: its last (max_tokens), so a gets no step.
  EXPECT_EQ(a.num_computed, a.max_kv_tokens);
  step({&b});
  step({&b});
  // b needs a third page (position 8), the pool has none: b, the latest admission, is preempted
  // with a placeholder as its last token, and neither it nor c behind it is admitted until the
  // token is known.
  Sequence c;
  c.id = 2;
  c.tokens = {9};
  c.num_prompt = 1;
  c.max_kv_tokens = 1;
  sched.add(&c);
  ScheduleResult sr = sched.schedule();
  ASSERT_EQ(sr.preempted.size(), 1u);
  EXPECT_EQ(sr.preempted[0], &b);
  EXPECT_TRUE(sr.scheduled.empty());
  EXPECT_EQ(sched.num_waiting(), 2);
  ASSERT_LT(b.tokens.back(), 0);
  b.tokens.back() = 53;
  a.tokens.back() = 31;
  sched.finish(&a);
  sr = sched.schedule();
  ASSERT_FALSE(sr.scheduled.empty());
  EXPECT_EQ(sr.scheduled[0].seq, &b);  // readmitted: recomputes its 9 tokens
  EXPECT_EQ(sr.scheduled[0].num_new, 9);
  sched.check_invariants();
}

}  // namespace test_scheduler
}  // namespace nc

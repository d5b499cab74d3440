// StepPipeline over the fake model: the step in flight and its placeholders (asynchronous
// scheduling), synchronous steps, the host sampler, and the error recovery across two steps.
#include <gtest/gtest.h>

#include "core/error.h"
#include "engine/sampling.h"
#include "engine/step_pipeline.h"
#include "fake_model.h"

namespace nc {
namespace {

constexpr int kVocab = 300;
constexpr int kPageSize = 4;
constexpr int kPages = 64;

enum class Mode { Host, Device, DeviceAsync };

// The pipeline and what it works with, put together as the engine does.
struct Rig {
  explicit Rig(Mode mode)
      : cfg(config(mode)), model(kVocab, 4096, mode != Mode::Host), pool(kPages) {
    model.allocate_kv(kPages, kPageSize, KVLayout::NHD);
  }
  static EngineConfig config(Mode mode) {
    EngineConfig c;
    c.page_size = kPageSize;
    c.async_scheduling = mode == Mode::DeviceAsync;
    return c;
  }
  // One Engine::step(): launch, complete, outputs.
  std::vector<RequestOutput> step() {
    acct.begin_call();
    StepsToComplete steps = pipe.launch_next();
    pipe.complete(steps);
    return requests.take_outputs(pipe.in_flight_serial());
  }

  EngineConfig cfg;
  fake::FakeModel model;
  fake::FakeCodec codec;
  EngineStats st;
  PagePool pool;
  Scheduler sched{SchedulerConfig{kPageSize, 256, 8}, pool};
  RequestTable requests{codec, sched, kVocab, 4096, 1};
  StepAccounting acct{st, model};
  StepPipeline pipe{StepPipelineParts{cfg, model, sched, nullptr, requests, acct}};
};

SamplingParams greedy(int max_tokens) {
  return fake::greedy_ignoring_eos(max_tokens);
}

std::vector<int32_t> reference_greedy(std::vector<int32_t> seq, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(argmax(fake::reference_logits(seq, kVocab)));
    seq.push_back(out.back());
  }
  return out;
}

TEST(StepPipeline, AsyncStepGoesIntoFlightWithPlaceholdersAndCompletesOneCallLater) {
  Rig rig(Mode::DeviceAsync);
  const std::vector<int32_t> prompt = {10, 20, 30};
  const RequestId id = rig.requests.add(prompt, greedy(3));
  EXPECT_TRUE(rig.step().empty());  // the first call's tokens come with the next
  ASSERT_TRUE(rig.pipe.has_in_flight());
  EXPECT_EQ(rig.pipe.in_flight_serial(), int64_t(0));
  Request& r = rig.requests.at(id);
  EXPECT_EQ(r.seq.tokens, (std::vector<int32_t>{10, 20, 30, -1}));  // row 0's placeholder
  EXPECT_EQ(rig.st.num_steps, 1);
  EXPECT_GT(rig.st.prefill_steps.wall_s, 0);  // charged to the step in flight
  std::vector<int32_t> got;
  for (int call = 0; call < 8 && (rig.pipe.has_in_flight() || rig.requests.has_unfinished());
       ++call) {
    for (const RequestOutput& o : rig.step())
      got.insert(got.end(), o.new_token_ids.begin(), o.new_token_ids.end());
  }
  EXPECT_EQ(got, reference_greedy(prompt, 3));
  EXPECT_GE(rig.model.placeholders_resolved, 2);  // decode inputs named the step in flight
  EXPECT_EQ(rig.st.num_overlapped_steps, 2);
  EXPECT_EQ(rig.st.num_device_sampled, 3);
  EXPECT_EQ(rig.st.num_generated_tokens, 3);
  EXPECT_EQ(rig.st.decode_steps.steps, 2);
  EXPECT_FALSE(rig.pipe.has_in_flight());
  EXPECT_EQ(rig.pool.num_free(), kPages);
}

TEST(StepPipeline, SynchronousStepsCompleteInTheCallThatLaunchedThem) {
  for (Mode mode : {Mode::Host, Mode::Device}) {
    Rig rig(mode);
    const std::vector<int32_t> prompt = {1, 2, 3, 4, 5};
    rig.requests.add(prompt, greedy(2));
    const std::vector<RequestOutput> first = rig.step();
    ASSERT_EQ(first.size(), 1u);
    EXPECT_EQ(first[0].new_token_ids, reference_greedy(prompt, 1));
    EXPECT_FALSE(rig.pipe.has_in_flight());
    const std::vector<RequestOutput> second = rig.step();
    ASSERT_EQ(second.size(), 1u);
    EXPECT_TRUE(second[0].finished);
    EXPECT_EQ(rig.model.placeholders_resolved, 0);
    EXPECT_EQ(rig.st.num_overlapped_steps, 0);
    EXPECT_EQ(rig.st.num_device_sampled, mode == Mode::Device ? 2 : 0);
    EXPECT_TRUE(rig.step().empty());  // nothing left: no step
    EXPECT_EQ(rig.st.num_steps, 2);
  }
}

TEST(StepPipeline, ATokenForARequestThatFinishedMeanwhileIsDropped) {
  Rig rig(Mode::DeviceAsync);
  const RequestId id = rig.requests.add({7, 8, 9}, greedy(4));
  rig.step();  // step 0 in flight
  rig.requests.finish(rig.requests.at(id), FinishReason::Abort);
  const std::vector<RequestOutput> outs = rig.step();  // completes step 0
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_TRUE(outs[0].new_token_ids.empty());
  EXPECT_EQ(outs[0].finish_reason, FinishReason::Abort);
  EXPECT_EQ(rig.st.num_generated_tokens, 0);
  EXPECT_EQ(rig.requests.size(), 0u);
  EXPECT_EQ(rig.pool.num_free(), kPages);
}

TEST(StepPipeline, AFailedStepAbortsItsRequestsAndTheSynchronousStepBehindIt) {
  Rig rig(Mode::DeviceAsync);
  rig.model.fail_wait_at = 0;  // step 0's tokens never arrive
  const RequestId a = rig.requests.add({1, 2, 3}, greedy(4));
  rig.step();  // step 0 in flight
  SamplingParams penalised = greedy(4);
  penalised.presence_penalty = 0.5f;  // the host sampler: step 1 is synchronous
  const RequestId b = rig.requests.add({4, 5, 6}, penalised);
  EXPECT_THROW(rig.step(), Error);
  for (RequestId id : {a, b}) {
    const Request& r = rig.requests.at(id);
    EXPECT_TRUE(r.finished);
    EXPECT_EQ(r.reason, FinishReason::Abort);
    EXPECT_EQ(r.seq.num_known(), r.seq.num_tokens());  // no placeholder left
  }
  EXPECT_FALSE(rig.pipe.has_in_flight());
  const std::vector<RequestOutput> outs = rig.step();  // the outputs of the aborted requests
  EXPECT_EQ(outs.size(), 2u);
  EXPECT_EQ(rig.requests.size(), 0u);
  EXPECT_EQ(rig.pool.num_free(), kPages);
}

TEST(StepPipeline, AFailedStepLeavesTheAsyncStepInFlightToBeDropped) {
  Rig rig(Mode::DeviceAsync);
  rig.model.fail_wait_at = 0;
  const RequestId a = rig.requests.add({1, 2, 3}, greedy(4));
  rig.step();                                // step 0 in flight
  EXPECT_THROW(rig.step(), Error);           // step 1 went into flight, step 0 failed
  EXPECT_TRUE(rig.requests.at(a).finished);  // named by step 1: still there
  EXPECT_TRUE(rig.pipe.has_in_flight());
  const std::vector<RequestOutput> outs = rig.step();  // step 1's token is dropped
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0].finish_reason, FinishReason::Abort);
  EXPECT_TRUE(outs[0].new_token_ids.empty());
  EXPECT_FALSE(rig.pipe.has_in_flight());
  EXPECT_EQ(rig.requests.size(), 0u);
  EXPECT_EQ(rig.pool.num_free(), kPages);
}

}  // namespace
}  // namespace nc

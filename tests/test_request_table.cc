// RequestTable: validation at add, token arrival (EOS, stop ids, stop strings, max_tokens),
// finish (placeholders cut, pages freed), outputs and when finished requests go; and which
// requests draw like the device.
#include <gtest/gtest.h>

#include "core/error.h"
#include "engine/request.h"
#include "fake_model.h"

namespace nc {
namespace {

constexpr int kVocab = 300;
constexpr int kContext = 64;

struct Table {
  fake::FakeCodec codec;
  PagePool pool{64};
  Scheduler sched{SchedulerConfig{4, 256, 8}, pool};
  RequestTable requests{codec, sched, kVocab, kContext, /*seed=*/7};
};

SamplingParams params(int max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  return p;
}

// Appends token `tok` to r and hands it to the table, as the pipeline does.
void arrive(RequestTable& t, Request& r, int32_t tok) {
  r.seq.tokens.push_back(tok);
  t.on_token(r, r.seq.num_tokens() - 1, EngineClock::now());
}

TEST(RequestTable, AddValidatesAndNamesTheBadValue) {
  Table t;
  auto message = [&](std::vector<int32_t> prompt, const SamplingParams& p) {
    try {
      t.requests.add(std::move(prompt), p);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message({}, params(4)).find("empty prompt"), std::string::npos);
  EXPECT_NE(message({1, 300}, params(4)).find("300"), std::string::npos);
  EXPECT_NE(message(std::vector<int32_t>(64, 1), params(1)).find("64 tokens"), std::string::npos);
  EXPECT_NE(message({1, 2}, params(63)).find("max_tokens (63)"), std::string::npos);
  SamplingParams bad = params(4);
  bad.top_p = 0;
  EXPECT_FALSE(message({1}, bad).empty());
  EXPECT_EQ(t.requests.size(), 0u);  // nothing queued
  EXPECT_EQ(t.sched.num_waiting(), 0);
  const RequestId id = t.requests.add({1, 2, 3}, params(4));
  EXPECT_EQ(id, 0);
  EXPECT_EQ(t.sched.num_waiting(), 1);
  Request& r = t.requests.at(id);
  EXPECT_EQ(r.seq.num_prompt, 3);
  EXPECT_EQ(r.seq.max_kv_tokens, 3 + 4 - 1);
  EXPECT_EQ(r.masked_before_min, std::vector<int32_t>{fake::FakeCodec::kEos});
}

TEST(RequestTable, TokensStopOnEosStopIdsAndLength) {
  Table t;
  const RequestId a = t.requests.add({1}, params(8));
  SamplingParams with_stop_id = params(8);
  with_stop_id.stop_token_ids = {'x'};
  const RequestId b = t.requests.add({1}, with_stop_id);
  const RequestId c = t.requests.add({1}, params(2));
  arrive(t.requests, t.requests.at(a), 'h');
  arrive(t.requests, t.requests.at(a), fake::FakeCodec::kEos);
  arrive(t.requests, t.requests.at(b), 'x');
  arrive(t.requests, t.requests.at(c), 'o');
  arrive(t.requests, t.requests.at(c), 'k');
  const std::vector<RequestOutput> outs = t.requests.take_outputs(std::nullopt);
  ASSERT_EQ(outs.size(), 3u);
  EXPECT_EQ(outs[0].finish_reason, FinishReason::Stop);
  EXPECT_EQ(outs[0].text_delta, "h");  // EOS's text is not part of the output
  EXPECT_EQ(outs[0].new_token_ids, (std::vector<int32_t>{'h', fake::FakeCodec::kEos}));
  EXPECT_EQ(outs[1].finish_reason, FinishReason::Stop);
  EXPECT_EQ(outs[1].text_delta, "");
  EXPECT_EQ(outs[2].finish_reason, FinishReason::Length);
  EXPECT_EQ(outs[2].text_delta, "ok");
  EXPECT_EQ(outs[2].num_completion_tokens, 2);
  EXPECT_EQ(t.requests.size(), 0u);  // finished and reported: gone
  EXPECT_FALSE(t.requests.has_unfinished());
}

TEST(RequestTable, StopStringsCountOnlyAfterMinTokens) {
  Table t;
  SamplingParams p = params(8);
  p.stop = {"b"};
  p.min_tokens = 2;
  const RequestId id = t.requests.add({1}, p);
  Request& r = t.requests.at(id);
  arrive(t.requests, r, 'b');  // tokens 1 and 2, up to min_tokens: text (vLLM: checks when the
  EXPECT_FALSE(r.finished);    // output is longer than min_tokens)
  arrive(t.requests, r, 'b');
  EXPECT_FALSE(r.finished);
  arrive(t.requests, r, 'b');
  EXPECT_TRUE(r.finished);
  EXPECT_EQ(r.reason, FinishReason::Stop);
  EXPECT_EQ(t.requests.take_outputs(std::nullopt)[0].text_delta, "bb");
}

TEST(RequestTable, FinishCutsPlaceholdersAndStaysWhileTheStepInFlightNamesIt) {
  Table t;
  const RequestId id = t.requests.add({1, 2, 3}, params(8));
  Request& r = t.requests.at(id);
  r.seq.tokens.push_back(-1);  // a token still being sampled
  r.last_step = 5;
  t.requests.finish(r, FinishReason::Abort);
  EXPECT_EQ(r.seq.num_tokens(), 3);
  EXPECT_EQ(t.sched.num_waiting(), 0);
  t.requests.finish(r, FinishReason::Stop);  // a second finish changes nothing
  EXPECT_EQ(r.reason, FinishReason::Abort);
  std::vector<RequestOutput> outs = t.requests.take_outputs(int64_t(5));
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_TRUE(outs[0].finished);
  EXPECT_EQ(outs[0].finish_reason, FinishReason::Abort);
  EXPECT_EQ(t.requests.size(), 1u);  // step 5 is in flight: it stays
  EXPECT_FALSE(t.requests.has_unfinished());
  EXPECT_TRUE(t.requests.take_outputs(int64_t(6)).empty());
  EXPECT_EQ(t.requests.size(), 0u);
  EXPECT_EQ(t.requests.find(id), nullptr);
}

TEST(RequestTable, ARequestNeverSteppedGoesWhenNoStepIsInFlight) {
  Table t;
  const RequestId id = t.requests.add({1}, params(4));
  t.requests.finish(t.requests.at(id), FinishReason::Abort);
  EXPECT_TRUE(t.requests.has_unfinished());  // its output is not taken yet
  EXPECT_EQ(t.requests.take_outputs(std::nullopt).size(), 1u);
  EXPECT_EQ(t.requests.size(), 0u);
}

TEST(RequestTable, DrawsLikeTheDeviceOnlyWithoutHostOnlyParameters) {
  Table t;
  Request& plain = t.requests.at(t.requests.add({1}, params(4)));
  EXPECT_TRUE(draws_like_device(plain, true));
  EXPECT_FALSE(draws_like_device(plain, false));
  SamplingParams pen = params(4);
  pen.presence_penalty = 0.5f;
  EXPECT_FALSE(draws_like_device(t.requests.at(t.requests.add({1}, pen)), true));
  SamplingParams min = params(4);
  min.min_tokens = 1;  // EOS masked until one token is out
  Request& masked = t.requests.at(t.requests.add({1}, min));
  EXPECT_FALSE(draws_like_device(masked, true));
  masked.seq.tokens.push_back('a');
  EXPECT_TRUE(draws_like_device(masked, true));
  min.ignore_eos = true;  // nothing to mask
  EXPECT_TRUE(draws_like_device(t.requests.at(t.requests.add({1}, min)), true));
  // Greedy draws no seed; a sampled row's seed comes from the request's RNG.
  EXPECT_EQ(row_sampling(plain).inv_temperature, 0.0f);
  EXPECT_EQ(row_sampling(plain).seed, 0u);
  SamplingParams hot = params(4);
  hot.temperature = 0.5f;
  hot.seed = 11;
  Request& h = t.requests.at(t.requests.add({1}, hot));
  std::mt19937_64 rng(11);
  const RowSampling rs = row_sampling(h);
  EXPECT_EQ(rs.inv_temperature, 2.0f);
  EXPECT_EQ(rs.seed, rng());
}

}  // namespace
}  // namespace nc

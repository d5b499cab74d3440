// StepAccounting: step counts per kind from a plan, cascade figures, and the charge of device,
// host-preparation and wall time to the kind of a completed step.
#include <gtest/gtest.h>

#include <thread>

#include "engine/step_accounting.h"
#include "fake_model.h"

namespace nc {
namespace {

// A fake model whose running device / host-prep totals the test sets.
class TimedModel : public fake::FakeModel {
 public:
  TimedModel() : FakeModel(300, 4096) {}
  ModelTimings timings() override { return now; }
  ModelTimings now;
};

StepEntry entry(int start, int num_new) {
  StepEntry e;
  e.start = start;
  e.num_new = num_new;
  return e;
}

TEST(StepAccounting, CountsALaunchedStepInItsKind) {
  EngineStats st;
  TimedModel model;
  StepAccounting acct(st, model);
  StepPlan prefill;
  prefill.entries = {entry(0, 5), entry(16, 3)};  // a new prompt and a prefill chunk
  prefill.num_prefill_tokens = 8;
  EngineStats::StepKind& k = acct.count_launched(prefill);
  EXPECT_EQ(&k, &st.prefill_steps);
  EXPECT_EQ(st.num_steps, 1);
  EXPECT_EQ(st.num_prompt_tokens_computed, 8);
  EXPECT_EQ(k.steps, 1);
  EXPECT_EQ(k.tokens, 8);
  EXPECT_EQ(k.kv_tokens, 5 + 19);
  // Causal pairs: 5 new rows over 0..4 (15), 3 rows after 16 keys (3 * 16 + 6).
  EXPECT_EQ(k.attn_pairs, 15 + 3 * 16 + 6);

  StepPlan decode;
  decode.entries = {entry(10, 1), entry(20, 1)};
  decode.num_decode_tokens = 2;
  EXPECT_EQ(&acct.count_launched(decode), &st.decode_steps);
  EXPECT_EQ(st.num_steps, 2);
  EXPECT_EQ(st.num_prompt_tokens_computed, 8);
  EXPECT_EQ(st.decode_steps.tokens, 2);
  EXPECT_EQ(st.decode_steps.kv_tokens, 11 + 21);
  EXPECT_EQ(st.decode_steps.attn_pairs, 11 + 21);
  EXPECT_EQ(st.prefill_steps.steps, 1);
}

TEST(StepAccounting, ChargesTimeSinceTheLastChargeToTheGivenKind) {
  EngineStats st;
  TimedModel model;
  StepAccounting acct(st, model);
  acct.begin_call();
  model.now = {2.0, 0.5, 0, {}};
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  acct.charge(st.prefill_steps);
  EXPECT_DOUBLE_EQ(st.prefill_steps.device_s, 2.0);
  EXPECT_DOUBLE_EQ(st.prefill_steps.model_prep_s, 0.5);
  EXPECT_GE(st.prefill_steps.wall_s, 0.002);
  // The next charge gets only what came after the first.
  model.now = {3.5, 0.75, 0, {}};
  acct.charge(st.decode_steps);
  EXPECT_DOUBLE_EQ(st.decode_steps.device_s, 1.5);
  EXPECT_DOUBLE_EQ(st.decode_steps.model_prep_s, 0.25);
  EXPECT_DOUBLE_EQ(st.prefill_steps.device_s, 2.0);
  // A new call restarts the wall clock (the time between calls is nobody's), not the device
  // totals. (The bound is far above the charge's own time and below the sleep, so that a loaded
  // CI machine pausing the thread does not fail it.)
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  acct.begin_call();
  const double wall_before = st.decode_steps.wall_s;
  acct.charge(st.decode_steps);
  EXPECT_LT(st.decode_steps.wall_s - wall_before, 0.3);
  EXPECT_DOUBLE_EQ(st.decode_steps.device_s, 1.5);
}

TEST(StepAccounting, RecordsCascadeFiguresAndTotals) {
  EngineStats st;
  TimedModel model;
  StepAccounting acct(st, model);
  CascadeStats a;
  a.num_levels = 3;
  a.kv_bytes_plain = 100;
  a.kv_bytes_cascade = 40;
  a.pages_per_level = {1, 2, 5};
  acct.record_cascade(a);
  CascadeStats b;
  b.kv_bytes_plain = 10;
  b.kv_bytes_cascade = 10;
  b.pages_per_level = {4};
  acct.record_cascade(b);
  const CacheStats& c = st.cache;
  EXPECT_EQ(c.last_step_pages_per_level, std::vector<int>{4});
  EXPECT_DOUBLE_EQ(c.last_step_kv_bytes_plain, 10);
  EXPECT_DOUBLE_EQ(c.last_step_kv_bytes_cascade, 10);
  EXPECT_DOUBLE_EQ(c.kv_bytes_plain, 110);
  EXPECT_DOUBLE_EQ(c.kv_bytes_cascade, 50);
  EXPECT_EQ(c.cascade_steps, 1);
  EXPECT_EQ(c.max_levels, 3);
}

TEST(StepAccounting, CountersAddUp) {
  EngineStats st;
  TimedModel model;
  StepAccounting acct(st, model);
  acct.add_schedule_time(0.25);
  acct.add_model_time(0.5);
  acct.add_sample_time(0.125);
  acct.add_model_time(0.5);
  acct.count_device_sampled(3);
  acct.count_generated_token();
  acct.count_generated_token();
  acct.count_overlapped_step();
  EXPECT_DOUBLE_EQ(st.schedule_s, 0.25);
  EXPECT_DOUBLE_EQ(st.model_s, 1.0);
  EXPECT_DOUBLE_EQ(st.sample_s, 0.125);
  EXPECT_EQ(st.num_device_sampled, 3);
  EXPECT_EQ(st.num_generated_tokens, 2);
  EXPECT_EQ(st.num_overlapped_steps, 1);
}

}  // namespace
}  // namespace nc

#include <gtest/gtest.h>

#include "nanocascade/engine.h"

namespace nc {
namespace {

RequestOutput step_output(RequestId id, std::vector<int32_t> ids, std::string text, bool finished) {
  RequestOutput o;
  o.id = id;
  o.new_token_ids = std::move(ids);
  o.text_delta = std::move(text);
  o.finished = finished;
  if (finished) {
    o.finish_reason = FinishReason::Length;
    o.time_to_first_token_s = 0.5;
    o.time_per_output_token_s = 0.25;
  }
  return o;
}

TEST(CompletionOutput, AppendGathersStepsAndTakesTheFinalFigures) {
  CompletionOutput c;
  EXPECT_FALSE(c.append(step_output(7, {1, 2}, "ab", false)));
  EXPECT_EQ(c.finish_reason, FinishReason::None);
  EXPECT_EQ(c.time_to_first_token_s, 0);
  EXPECT_TRUE(c.append(step_output(7, {3}, "c", true)));
  EXPECT_EQ(c.id, 7);
  EXPECT_EQ(c.token_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(c.text, "abc");
  EXPECT_EQ(c.finish_reason, FinishReason::Length);
  EXPECT_DOUBLE_EQ(c.time_to_first_token_s, 0.5);
  EXPECT_DOUBLE_EQ(c.time_per_output_token_s, 0.25);
}

}  // namespace
}  // namespace nc

// Bad input at the decoder: each gets an nc::Error naming what is wrong, and the model keeps
// working afterwards.
#include <gtest/gtest.h>

#include "golden.h"
#include "model/model_loader.h"
#include "seq_runner.h"

namespace nc {
namespace {

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class ModelErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    lm_ = load_model(testing::fixtures_dir() + "/tiny-llama");
    model_ = std::make_unique<LlamaModel>(lm_.config, lm_.weights, *backend_);
    kv_ = model_->make_kv_cache(8, 16);
  }
  ForwardInput one_token(int32_t id, int32_t pos) {
    ForwardInput in;
    in.token_ids = {id};
    in.positions = {pos};
    PagedKVBatch b;
    b.add(1, {0}, pos + 1, 16);
    in.attention = {1, {b}};
    in.logit_rows = {0};
    return in;
  }
  LoadedModel lm_;
  std::unique_ptr<Backend> backend_ = make_cpu_backend();
  std::unique_ptr<LlamaModel> model_;
  KVCache kv_;
};

TEST_F(ModelErrors, TokenIdsPositionsAndRowsOutOfRange) {
  EXPECT_NE(error_of([&] { model_->forward(one_token(512, 0), kv_); }).find("token id 512"),
            std::string::npos);
  EXPECT_NE(error_of([&] { model_->forward(one_token(-1, 0), kv_); }).find("token id -1"),
            std::string::npos);
  ForwardInput far = one_token(1, 0);
  far.positions = {100000};
  EXPECT_NE(error_of([&] { model_->forward(far, kv_); }).find("position 100000"),
            std::string::npos);
  ForwardInput rows = one_token(1, 0);
  rows.logit_rows = {3};
  EXPECT_NE(error_of([&] { model_->forward(rows, kv_); }).find("logit row 3"), std::string::npos);
  // Still serves a good step afterwards.
  EXPECT_EQ(model_->forward(one_token(1, 0), kv_).size(), size_t(lm_.config.vocab_size));
}

// Asynchronous scheduling's placeholder ids: -1 - r is row r of the previous forward_sample's
// tokens, resolved by the backend (scatter_ids) exactly as if the id had been given; a
// placeholder for a row that step did not sample, or after a pass that sampled nothing, is an
// error.
TEST_F(ModelErrors, PlaceholderIdsNameThePreviousStepsSamples) {
  const std::vector<RowSampling> greedy(1);
  const int32_t first = model_->forward_sample_async(one_token(5, 0), kv_, greedy)->wait()[0];
  const std::vector<float> via_placeholder = model_->forward(one_token(-1, 1), kv_);
  KVCache fresh = model_->make_kv_cache(8, 16);
  model_->forward(one_token(5, 0), fresh);
  EXPECT_EQ(via_placeholder, model_->forward(one_token(first, 1), fresh));
  // forward() sampled nothing: no placeholder refers to it.
  EXPECT_NE(error_of([&] {
              model_->forward(one_token(-1, 2), kv_);
            }).find("previous step's samples, which had 0"),
            std::string::npos);
  model_->forward_sample(one_token(5, 0), kv_, greedy);
  EXPECT_NE(error_of([&] { model_->forward(one_token(-2, 1), kv_); }).find("names row 1"),
            std::string::npos);
}

TEST_F(ModelErrors, BadPageTables) {
  ForwardInput in = one_token(1, 0);
  in.attention.levels[0].kv_indices = {8};  // the cache has pages 0..7
  EXPECT_NE(error_of([&] { model_->forward(in, kv_); }).find("page id 8"), std::string::npos);
  in = one_token(1, 0);
  in.attention.num_tokens = 2;
  EXPECT_NE(error_of([&] { model_->forward(in, kv_); }).find("covers 2 tokens"), std::string::npos);
  in = one_token(1, 0);
  in.attention.levels.clear();
  EXPECT_NE(error_of([&] { model_->forward(in, kv_); }).find("no levels"), std::string::npos);
  EXPECT_THROW(model_->make_kv_cache(4, 0), Error);
  EXPECT_THROW(model_->make_kv_cache(4, 257), Error);
}

TEST_F(ModelErrors, MissingAndMisshapenWeightsNameTheTensor) {
  WeightMap w = lm_.weights;
  w.erase("model.layers.1.mlp.down_proj.weight");
  EXPECT_NE(error_of([&] {
              LlamaModel m(lm_.config, w, *backend_);
            }).find("model.layers.1.mlp.down_proj.weight"),
            std::string::npos);
  w = lm_.weights;
  w["model.norm.weight"].shape = {63};
  w["model.norm.weight"].data.resize(63);
  const std::string msg = error_of([&] { LlamaModel m(lm_.config, w, *backend_); });
  EXPECT_NE(msg.find("model.norm.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[63]"), std::string::npos) << msg;
  ModelConfig bad = lm_.config;
  bad.rope_scaling.type = "dynamic";
  EXPECT_NE(error_of([&] { LlamaModel m(bad, lm_.weights, *backend_); }).find("dynamic"),
            std::string::npos);
}

}  // namespace
}  // namespace nc

// MoE routing (backend/moe_routing.h) against a hand-written double-precision reference of each
// mode, written from transformers' modules (Qwen3MoeTopKRouter, DeepseekV2TopkRouter greedy and
// group_limited_greedy, DeepseekV3TopkRouter noaux_tc), and MoeRouting::validate's errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "backend/backend.h"
#include "core/error.h"

namespace nc {
namespace {

struct Routed {
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

// The reference, one token, in double: scores, the eligible groups, then the top-k.
Routed reference(const std::vector<float>& logit, const std::vector<float>& bias,
                 const MoeRouting& r) {
  const int E = r.num_experts, per = E / r.n_group;
  std::vector<double> s(E), choice(E);
  if (r.scoring == MoeScoring::Softmax) {
    double sum = 0;
    for (int e = 0; e < E; ++e) sum += std::exp(double(logit[e]));
    for (int e = 0; e < E; ++e) choice[e] = s[e] = std::exp(double(logit[e])) / sum;
  } else {
    for (int e = 0; e < E; ++e) {
      s[e] = 1 / (1 + std::exp(-double(logit[e])));
      choice[e] = s[e] + (bias.empty() ? 0.0 : bias[e]);
    }
  }
  std::vector<double> gscore(r.n_group);
  for (int g = 0; g < r.n_group; ++g) {
    std::vector<double> v(choice.begin() + g * per, choice.begin() + (g + 1) * per);
    std::sort(v.rbegin(), v.rend());
    gscore[g] = r.scoring == MoeScoring::Softmax ? v[0] : (per >= 2 ? v[0] + v[1] : v[0]);
  }
  std::vector<int> groups(r.n_group);
  std::iota(groups.begin(), groups.end(), 0);
  std::stable_sort(groups.begin(), groups.end(),
                   [&](int a, int b) { return gscore[a] > gscore[b]; });
  std::vector<int> cand;
  for (int e = 0; e < E; ++e)
    if (std::find(groups.begin(), groups.begin() + r.topk_group, e / per) !=
        groups.begin() + r.topk_group)
      cand.push_back(e);
  std::stable_sort(cand.begin(), cand.end(), [&](int a, int b) { return choice[a] > choice[b]; });
  Routed out;
  double sum = 0;
  for (int j = 0; j < r.top_k; ++j) sum += s[cand[j]];
  for (int j = 0; j < r.top_k; ++j) {
    out.ids.push_back(cand[j]);
    out.weights.push_back(float((r.renormalize ? s[cand[j]] / sum : s[cand[j]]) * r.scaling));
  }
  return out;
}

std::vector<float> random_values(int n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// T tokens through route_tokens and through the reference: same experts in the same slots,
// weights within 1e-6 relative.
void expect_matches_reference(const MoeRouting& r, bool with_bias, uint32_t seed) {
  const int T = 40, E = r.num_experts, k = r.top_k;
  const std::vector<float> logits = random_values(T * E, seed, 2.0f);
  const std::vector<float> bias =
      with_bias ? random_values(E, seed + 1, 0.3f) : std::vector<float>{};
  std::vector<int32_t> ids(T * k);
  std::vector<float> w(T * k);
  route_tokens(logits.data(), T, with_bias ? bias.data() : nullptr, r, ids.data(), w.data());
  for (int t = 0; t < T; ++t) {
    const Routed want = reference(
        std::vector<float>(logits.begin() + t * E, logits.begin() + (t + 1) * E), bias, r);
    for (int j = 0; j < k; ++j) {
      ASSERT_EQ(ids[t * k + j], want.ids[j]) << "token " << t << " slot " << j;
      ASSERT_NEAR(w[t * k + j], want.weights[j], 1e-6 * std::abs(want.weights[j]) + 1e-9)
          << "token " << t << " slot " << j;
    }
  }
}

TEST(MoeRouting, SoftmaxTopKQwen3) {
  MoeRouting r{.num_experts = 8, .top_k = 2};
  expect_matches_reference(r, false, 1);
  r.renormalize = true;  // norm_topk_prob
  expect_matches_reference(r, false, 2);
}

TEST(MoeRouting, DeepSeekV2GreedyScales) {
  MoeRouting r{.num_experts = 16, .top_k = 6, .scaling = 16.0f};
  expect_matches_reference(r, false, 3);
}

TEST(MoeRouting, DeepSeekV2GroupLimitedGreedy) {
  MoeRouting r{.num_experts = 16, .top_k = 3, .n_group = 4, .topk_group = 2, .scaling = 2.5f};
  expect_matches_reference(r, false, 4);
}

TEST(MoeRouting, DeepSeekV3NoauxTc) {
  MoeRouting r{.num_experts = 32,
               .top_k = 4,
               .scoring = MoeScoring::Sigmoid,
               .n_group = 8,
               .topk_group = 3,
               .renormalize = true,
               .scaling = 2.5f};
  expect_matches_reference(r, true, 5);
  r.renormalize = false;
  expect_matches_reference(r, true, 6);
}

// The bias chooses but does not weigh: a large bias on expert 0 makes every token pick it, with
// its un-biased sigmoid score as the weight.
TEST(MoeRouting, SigmoidBiasChoosesOnly) {
  const MoeRouting r{.num_experts = 4, .top_k = 1, .scoring = MoeScoring::Sigmoid};
  const std::vector<float> logits = {-1.0f, 2.0f, 0.5f, 0.0f}, bias = {10.0f, 0, 0, 0};
  int32_t id = -1;
  float w = 0;
  route_tokens(logits.data(), 1, bias.data(), r, &id, &w);
  EXPECT_EQ(id, 0);
  EXPECT_FLOAT_EQ(w, 1.0f / (1.0f + std::exp(1.0f)));
}

// Groups by the sum of their two best biased scores, not by their best one: group 1 has the
// single best expert, group 0 the better pair.
TEST(MoeRouting, SigmoidGroupsRankByTopTwoSum) {
  const MoeRouting r{
      .num_experts = 4, .top_k = 1, .scoring = MoeScoring::Sigmoid, .n_group = 2, .topk_group = 1};
  const std::vector<float> logits = {1.0f, 1.0f, 3.0f, -4.0f};
  int32_t id = -1;
  float w = 0;
  route_tokens(logits.data(), 1, nullptr, r, &id, &w);
  EXPECT_EQ(id, 0);  // expert 2 alone is best, but its group loses; ties go to the lower id
}

TEST(MoeRouting, TiesGoToTheLowerExpert) {
  const MoeRouting r{.num_experts = 4, .top_k = 2};
  const std::vector<float> logits = {0.0f, 1.0f, 0.0f, 1.0f};
  int32_t ids[2];
  float w[2];
  route_tokens(logits.data(), 1, nullptr, r, ids, w);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);
}

TEST(MoeRouting, ValidateNamesTheField) {
  auto message = [](const MoeRouting& r) {
    try {
      r.validate();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message({.num_experts = 0, .top_k = 1}).find("num_experts"), std::string::npos);
  EXPECT_NE(message({.num_experts = 4, .top_k = 5}).find("num_experts_per_tok 5 exceeds"),
            std::string::npos);
  EXPECT_NE(message({.num_experts = 6, .top_k = 1, .n_group = 4}).find("n_group 4"),
            std::string::npos);
  EXPECT_NE(
      message({.num_experts = 8, .top_k = 5, .n_group = 4, .topk_group = 2}).find("topk_group 2"),
      std::string::npos);
  EXPECT_NE(message({.num_experts = 4, .top_k = 1, .scaling = 0}).find("routed_scaling_factor"),
            std::string::npos);
  EXPECT_EQ(message({.num_experts = 4, .top_k = 4}), "");
}

}  // namespace
}  // namespace nc

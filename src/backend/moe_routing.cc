// The reference MoE routing (backend/moe_routing.h).
#include "backend/moe_routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace nc {

void MoeRouting::validate() const {
  using enum ErrorKind;
  NC_CHECK_AS(InvalidArgument, num_experts >= 1, "moe: num_experts must be positive, got {}",
              num_experts);
  NC_CHECK_AS(InvalidArgument, top_k >= 1, "moe: num_experts_per_tok must be positive, got {}",
              top_k);
  NC_CHECK_AS(InvalidArgument, top_k <= num_experts,
              "moe: num_experts_per_tok {} exceeds num_experts {}", top_k, num_experts);
  NC_CHECK_AS(InvalidArgument, n_group >= 1 && num_experts % n_group == 0,
              "moe: n_group {} does not divide num_experts {}", n_group, num_experts);
  NC_CHECK_AS(InvalidArgument, topk_group >= 1 && topk_group <= n_group,
              "moe: topk_group {} outside [1, n_group = {}]", topk_group, n_group);
  const int per_group = num_experts / n_group;
  NC_CHECK_AS(InvalidArgument, topk_group * per_group >= top_k,
              "moe: topk_group {} groups of {} experts hold fewer than num_experts_per_tok {}",
              topk_group, per_group, top_k);
  NC_CHECK_AS(Unsupported, scoring != MoeScoring::Sigmoid || n_group == 1 || per_group >= 2,
              "moe: sigmoid routing ranks groups by their two best experts; groups of {} expert "
              "are not supported",
              per_group);
  NC_CHECK_AS(InvalidArgument, std::isfinite(scaling) && scaling > 0,
              "moe: routed_scaling_factor must be positive, got {}", scaling);
}

namespace {

// Indices of the k largest values of v among those with ok[i], largest first, ties to the lower
// index.
std::vector<int> top_indices(const std::vector<float>& v, const std::vector<char>& ok, int k) {
  std::vector<int> idx;
  for (int i = 0; i < int(v.size()); ++i)
    if (ok[size_t(i)]) idx.push_back(i);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int a, int b) { return v[size_t(a)] > v[size_t(b)]; });
  idx.resize(size_t(k));
  return idx;
}

// Which experts the token may choose: those of its topk_group best groups.
std::vector<char> eligible_experts(const std::vector<float>& choice, const MoeRouting& r) {
  const int E = r.num_experts, per = E / r.n_group;
  std::vector<char> ok(size_t(E), 1);
  if (r.n_group == 1 || r.topk_group == r.n_group) return ok;
  std::vector<float> group(size_t(r.n_group));
  for (int g = 0; g < r.n_group; ++g) {
    const auto b = choice.begin() + g * per, e = b + per;
    if (r.scoring == MoeScoring::Softmax) {
      group[size_t(g)] = *std::max_element(b, e);  // the group's best probability
    } else {
      std::vector<float> s(b, e);  // the sum of its two best biased scores
      std::partial_sort(s.begin(), s.begin() + 2, s.end(), std::greater<float>());
      group[size_t(g)] = s[0] + s[1];
    }
  }
  const std::vector<int> best =
      top_indices(group, std::vector<char>(size_t(r.n_group), 1), r.topk_group);
  std::fill(ok.begin(), ok.end(), 0);
  for (int g : best) std::fill(ok.begin() + g * per, ok.begin() + (g + 1) * per, 1);
  return ok;
}

void route_one(const float* logits, const float* bias, const MoeRouting& r, int32_t* ids,
               float* weights) {
  const int E = r.num_experts;
  std::vector<float> score(static_cast<size_t>(E)), choice(static_cast<size_t>(E));
  if (r.scoring == MoeScoring::Softmax) {
    const float m = *std::max_element(logits, logits + E);
    float sum = 0;
    for (int e = 0; e < E; ++e) sum += score[size_t(e)] = std::exp(logits[e] - m);
    for (int e = 0; e < E; ++e) score[size_t(e)] /= sum;
    choice = score;
  } else {
    for (int e = 0; e < E; ++e) {
      score[size_t(e)] = 1.0f / (1.0f + std::exp(-logits[e]));
      choice[size_t(e)] = score[size_t(e)] + (bias ? bias[e] : 0.0f);
    }
  }
  const std::vector<int> top = top_indices(choice, eligible_experts(choice, r), r.top_k);
  float sum = 0;
  for (int j = 0; j < r.top_k; ++j) {
    ids[j] = top[size_t(j)];
    weights[j] = score[size_t(top[size_t(j)])];
    sum += weights[j];
  }
  if (r.renormalize && r.scoring == MoeScoring::Sigmoid) sum += 1e-20f;
  for (int j = 0; j < r.top_k; ++j) {
    if (r.renormalize) weights[j] /= sum;
    weights[j] *= r.scaling;
  }
}

}  // namespace

void route_tokens(const float* logits, int64_t T, const float* bias, const MoeRouting& r,
                  int32_t* ids, float* weights) {
  r.validate();
  const int64_t E = r.num_experts, k = r.top_k;
  for (int64_t t = 0; t < T; ++t) route_one(logits + t * E, bias, r, ids + t * k, weights + t * k);
}

}  // namespace nc

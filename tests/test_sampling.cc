#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "core/error.h"
#include "engine/detokenizer.h"
#include "engine/sampling.h"
#include "fake_model.h"

namespace nc {
namespace {

std::vector<float> log_probs(std::vector<double> p) {
  std::vector<float> l;
  for (double q : p) l.push_back(float(std::log(q)));
  return l;
}

std::vector<int32_t> kept(const std::vector<float>& logits, SamplingParams p) {
  return filter_candidates(logits, p).ids;
}

int32_t draw(std::vector<float> logits, const SamplingParams& p, std::mt19937_64& rng) {
  return sample_token(logits, p, {}, {}, {}, rng);
}

}  // namespace

TEST(Sampling, ValidationNamesTheBadParameter) {
  auto bad = [](auto mutate, const char* name) {
    SamplingParams p;
    mutate(p);
    try {
      p.validate();
      ADD_FAILURE() << name << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  };
  bad([](SamplingParams& p) { p.temperature = -0.1f; }, "temperature");
  bad([](SamplingParams& p) { p.temperature = NAN; }, "temperature");
  bad([](SamplingParams& p) { p.top_p = 0.0f; }, "top_p");
  bad([](SamplingParams& p) { p.top_p = 1.01f; }, "top_p");
  bad([](SamplingParams& p) { p.top_k = 0; }, "top_k");
  bad([](SamplingParams& p) { p.top_k = -2; }, "top_k");
  bad([](SamplingParams& p) { p.min_p = -0.1f; }, "min_p");
  bad([](SamplingParams& p) { p.min_p = 1.5f; }, "min_p");
  bad([](SamplingParams& p) { p.max_tokens = 0; }, "max_tokens");
  bad([](SamplingParams& p) { p.min_tokens = 20; }, "min_tokens");
  bad(
      [](SamplingParams& p) {
        p.min_tokens = 2;
        p.structured = {StructuredOutput::Kind::Regex, "yes|no"};
      },
      "min_tokens (2) cannot be combined with structured output");
  bad([](SamplingParams& p) { p.repetition_penalty = 0; }, "repetition_penalty");
  bad([](SamplingParams& p) { p.presence_penalty = 3; }, "presence_penalty");
  bad([](SamplingParams& p) { p.frequency_penalty = -2.5f; }, "frequency_penalty");
  bad([](SamplingParams& p) { p.stop = {""}; }, "stop string");
  bad([](SamplingParams& p) { p.stop_token_ids = {-1}; }, "stop token");
  SamplingParams ok;
  ok.temperature = 0;
  ok.top_k = 1;
  ok.top_p = 1;
  ok.min_p = 1;
  EXPECT_NO_THROW(ok.validate());
}

TEST(Sampling, GreedyIsArgmaxWithTiesToLowestId) {
  std::mt19937_64 rng(1);
  SamplingParams p;
  p.temperature = 0;
  EXPECT_EQ(draw({0.f, 3.f, 1.f, 3.f}, p, rng), 1);
  EXPECT_EQ(draw({5.f, 5.f}, p, rng), 0);
  EXPECT_EQ(draw({-1.f, -3.f, -0.5f}, p, rng), 2);
}

TEST(Sampling, TopKOneEqualsGreedy) {
  std::mt19937_64 gen(3);
  std::normal_distribution<float> nd(0.f, 2.f);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> logits(97);
    for (float& l : logits) l = nd(gen);
    if (trial % 10 == 0) logits[5] = logits[40] = 50.f;  // a tie at the top
    SamplingParams greedy;
    greedy.temperature = 0;
    SamplingParams k1;
    k1.top_k = 1;
    k1.temperature = 1.3f;
    std::mt19937_64 r1(trial), r2(trial);
    EXPECT_EQ(draw(logits, greedy, r1), draw(logits, k1, r2));
  }
}

TEST(Sampling, TopKKeepsTheKMostLikely) {
  SamplingParams p;
  p.top_k = 2;
  EXPECT_EQ(kept({1.f, 5.f, 3.f, 4.f, 2.f}, p), (std::vector<int32_t>{1, 3}));
  p.top_k = 3;
  EXPECT_EQ(kept({1.f, 5.f, 3.f, 4.f, 2.f}, p), (std::vector<int32_t>{1, 3, 2}));
  p.top_k = 2;  // a tie at the boundary keeps the lower id
  EXPECT_EQ(kept({1.f, 5.f, 3.f, 3.f, 2.f}, p), (std::vector<int32_t>{1, 2}));
  p.top_k = 10;  // larger than the vocabulary: all
  EXPECT_EQ(kept({1.f, 2.f}, p).size(), 2u);
}

TEST(Sampling, TopPKeepsTheShortestPrefixReachingP) {
  const auto logits = log_probs({0.05, 0.5, 0.15, 0.3});
  SamplingParams p;
  p.top_p = 0.4f;
  EXPECT_EQ(kept(logits, p), (std::vector<int32_t>{1}));
  p.top_p = 0.7f;  // 0.5 < 0.7 <= 0.8
  EXPECT_EQ(kept(logits, p), (std::vector<int32_t>{1, 3}));
  p.top_p = 0.9f;  // 0.8 < 0.9 <= 0.95
  EXPECT_EQ(kept(logits, p), (std::vector<int32_t>{1, 3, 2}));
  p.top_p = 1.0f;
  EXPECT_EQ(kept(logits, p).size(), 4u);
  // Renormalised over the kept set.
  p.top_p = 0.7f;
  const Candidates c = filter_candidates(logits, p);
  EXPECT_NEAR(c.probs[0], 0.5 / 0.8, 1e-6);
  EXPECT_NEAR(c.probs[1], 0.3 / 0.8, 1e-6);
}

TEST(Sampling, MinPDropsTokensBelowAFractionOfTheTop) {
  const auto logits = log_probs({0.05, 0.5, 0.15, 0.3});
  SamplingParams p;
  p.min_p = 0.2f;  // floor 0.1
  EXPECT_EQ(kept(logits, p), (std::vector<int32_t>{1, 3, 2}));
  p.min_p = 0.5f;  // floor 0.25
  EXPECT_EQ(kept(logits, p), (std::vector<int32_t>{1, 3}));
  p.min_p = 1.0f;
  EXPECT_EQ(kept(logits, p), (std::vector<int32_t>{1}));
}

TEST(Sampling, TemperatureAppliesBeforeTheFilters) {
  // p = (0.5, 0.3, 0.15, 0.05); at temperature 2 the distribution is ~(0.37, 0.29, 0.2, 0.12).
  const auto logits = log_probs({0.5, 0.3, 0.15, 0.05});
  SamplingParams p;
  p.top_p = 0.7f;
  EXPECT_EQ(kept(logits, p).size(), 2u);
  p.temperature = 2.0f;
  EXPECT_EQ(kept(logits, p).size(), 3u);
  p.temperature = 0.25f;  // sharper: (0.86, 0.11, ...)
  EXPECT_EQ(kept(logits, p).size(), 1u);
  // Order: top-k first, then top-p over the renormalised top-k set.
  p.temperature = 1.0f;
  p.top_k = 2;
  p.top_p = 0.6f;  // within {0.5, 0.3}/0.8 = {0.625, 0.375}: just the first
  EXPECT_EQ(kept(logits, p), (std::vector<int32_t>{0}));
}

TEST(Sampling, PenaltiesChangeTheRightLogits) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  std::vector<float> l = {2.f, -2.f, 1.f, 0.5f, 3.f};
  const std::vector<int32_t> prompt = {0}, output = {1};
  apply_penalties(l, p, prompt, output);
  EXPECT_EQ(l, (std::vector<float>{1.f, -4.f, 1.f, 0.5f, 3.f}));

  SamplingParams q;
  q.presence_penalty = 0.5f;
  q.frequency_penalty = 0.25f;
  l = {2.f, -2.f, 1.f, 0.5f, 3.f};
  const std::vector<int32_t> out2 = {2, 2, 3};
  apply_penalties(l, q, prompt, out2);  // prompt tokens are not penalised by these
  EXPECT_EQ(l, (std::vector<float>{2.f, -2.f, 0.f, -0.25f, 3.f}));
}

TEST(Sampling, MaskedIdsAreNeverSampled) {
  std::mt19937_64 rng(5);
  SamplingParams p;
  std::vector<float> l = {0.f, 10.f, 0.f};
  const std::vector<int32_t> masked = {1};
  for (int i = 0; i < 100; ++i) {
    std::vector<float> c = l;
    EXPECT_NE(sample_token(c, p, {}, {}, masked, rng), 1);
  }
}

TEST(Sampling, SeededDrawsAreReproducibleAndFollowTheDistribution) {
  const auto logits = log_probs({0.1, 0.2, 0.3, 0.4});
  for (SamplingParams p : {SamplingParams{}, [] {
                             SamplingParams q;
                             q.top_k = 4;  // the sorted path
                             return q;
                           }()}) {
    std::mt19937_64 a(42), b(42), c(43);
    std::vector<int32_t> sa, sb, sc;
    std::map<int32_t, int> counts;
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
      sa.push_back(draw(logits, p, a));
      sb.push_back(draw(logits, p, b));
      sc.push_back(draw(logits, p, c));
      ++counts[sa.back()];
    }
    EXPECT_EQ(sa, sb);
    EXPECT_NE(sa, sc);
    for (int t = 0; t < 4; ++t) EXPECT_NEAR(counts[t] / double(n), 0.1 * (t + 1), 0.015) << t;
  }
}

TEST(StopStrings, HeldBackAndNotEmitted) {
  StopStringMatcher m({"STOP", "\n\n"});
  std::string out;
  out += m.append("Hello S");
  EXPECT_EQ(out, "Hello ");  // "S" could start "STOP"
  out += m.append("T");
  EXPECT_EQ(out, "Hello ");
  out += m.append("x and ST");  // "STx" is no stop: released
  EXPECT_EQ(out, "Hello STx and ");
  out += m.append("OP more");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(out, "Hello STx and ");
  EXPECT_EQ(m.append("later"), "");
  EXPECT_EQ(m.text(), "Hello STx and ");

  StopStringMatcher n({"ab"});
  EXPECT_EQ(n.append("xa"), "x");
  EXPECT_EQ(n.flush(), "a");  // at the end the held text goes out

  StopStringMatcher unchecked({"ab"});
  EXPECT_EQ(unchecked.append("ab", false), "ab");
  EXPECT_FALSE(unchecked.stopped());
  EXPECT_EQ(unchecked.append("cab"), "c");
  EXPECT_TRUE(unchecked.stopped());
}

// vLLM's rule around min_tokens: a stop string counts when it ends in checked text, wherever it
// starts (its start, in text not yet checked, is held back meanwhile); one that lies wholly in
// unchecked text does not stop.
TEST(StopStrings, AStopBegunBeforeMinTokensEndsInCheckedText) {
  StopStringMatcher m({"abc"});
  EXPECT_EQ(m.append("xa", false), "x");  // "a" could start "abc": held, though not checked
  EXPECT_EQ(m.append("b", false), "");
  EXPECT_EQ(m.append("cd"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.text(), "x");
  StopStringMatcher inside({"a"});
  EXPECT_EQ(inside.append("a", false), "a");  // wholly unchecked: no stop
  EXPECT_EQ(inside.append("xy"), "xy");
  EXPECT_FALSE(inside.stopped());
  EXPECT_EQ(inside.append("za"), "z");
  EXPECT_TRUE(inside.stopped());
}

TEST(StopStrings, MatchedNamesTheStopThatEndedTheText) {
  StopStringMatcher m({"lo", "hel"});
  EXPECT_EQ(m.matched(), "");
  EXPECT_EQ(m.append("xhe"), "x");
  EXPECT_EQ(m.matched(), "");
  EXPECT_EQ(m.append("llo"), "");  // "hel" starts first, though "lo" is listed first
  EXPECT_EQ(m.matched(), "hel");

  StopStringMatcher tie({"abc", "ab"});
  tie.append("zabcd");
  EXPECT_EQ(tie.matched(), "abc");  // both start at 1: the first given
  StopStringMatcher none({"q"});
  none.append("abc");
  none.flush();
  EXPECT_FALSE(none.stopped());
  EXPECT_EQ(none.matched(), "");
}

TEST(Detokenizer, NeverEmitsHalfACharacter) {
  fake::FakeCodec codec;
  const std::string text = "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80!";  // héllo € 😀!
  IncrementalDetokenizer d(codec, {fake::FakeCodec::kBos}, true);
  std::string out;
  for (unsigned char c : text) {
    const std::string delta = d.push(c);
    EXPECT_EQ(utf8_complete_length(delta), delta.size());
    out += delta;
  }
  out += d.flush();
  EXPECT_EQ(out, text);
  EXPECT_EQ(utf8_complete_length("a\xE2\x82"), 1u);
  EXPECT_EQ(utf8_complete_length("a\xE2\x82\xAC"), 4u);
  // A prompt that ends inside a character (a continuation of an output cut mid-character): the
  // bytes that finish it are dropped, the output starts at the next whole character.
  IncrementalDetokenizer cut(codec, {'x', 0xE4}, true);
  EXPECT_EQ(cut.push(0xB8), "");
  EXPECT_EQ(cut.push(0xAD), "");
  EXPECT_EQ(cut.push('!'), "!");
}

// NaN logits (a broken model) are never drawn: greedy skips them as the device's draw does, and
// the plain temperature draw weighs them 0 instead of making every weight NaN.
TEST(Sampling, NanLogitsAreNeverDrawn) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> g = {nan, 1, 5};
  EXPECT_EQ(argmax(g), 2);
  SamplingParams p;
  p.temperature = 1;
  int counts[4] = {0, 0, 0, 0};
  for (uint64_t seed = 0; seed < 400; ++seed) {
    std::vector<float> l = {0, nan, 2, 1};
    std::mt19937_64 rng(seed);
    ++counts[sample_token(l, p, {}, {}, {}, rng)];
  }
  EXPECT_EQ(counts[1], 0);
  EXPECT_GT(counts[2], counts[3]);  // e^2 against e^1 and e^0
  EXPECT_GT(counts[3], counts[0]);
}

}  // namespace nc

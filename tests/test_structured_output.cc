// Structured output: the token bitmask op (CPU backend against the row reference), the draw under
// a bitmask, and grammars through the engine on the fake byte-level model (its logits are
// pseudo-random, so only the grammar makes its output well-formed), in each sampling mode.
#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>

#include "backend/backend.h"
#include "backend/sampling_filter.h"
#include "core/error.h"
#include "engine/grammar.h"
#include "fake_model.h"
#include "nanocascade/engine.h"

namespace nc {
namespace test_structured_output {

constexpr int kVocab = 300;

std::vector<int32_t> random_mask(int rows, int vocab, std::mt19937& rng) {
  std::vector<int32_t> m(size_t(rows * bitmask_words(vocab)));
  for (int32_t& w : m) w = int32_t(rng());
  return m;
}

TEST(TokenBitmask, RowReferenceMasksExactlyTheClearBits) {
  std::vector<float> row(70, 1.5f);
  std::vector<int32_t> words = {int32_t(0x80000001u), 0, 0x2};  // ids 0, 31, 65
  apply_token_bitmask_row(row, words);
  for (int i = 0; i < 70; ++i) {
    const bool allowed = i == 0 || i == 31 || i == 65;
    EXPECT_EQ(row[size_t(i)], allowed ? 1.5f : -INFINITY) << "id " << i;
  }
  // Ids past the mask's bits are not allowed.
  std::vector<float> longer(40, 0.0f);
  apply_token_bitmask_row(longer, std::vector<int32_t>{-1});
  EXPECT_EQ(longer[31], 0.0f);
  EXPECT_EQ(longer[32], -INFINITY);
}

TEST(TokenBitmask, CpuBackendOpEqualsTheRowReference) {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  std::mt19937 rng(7);
  const int R = 3, V = 1000;  // V not a multiple of 32
  std::vector<float> x(size_t(R * V));
  std::normal_distribution<float> nd;
  for (float& v : x) v = nd(rng);
  const std::vector<int32_t> mask = random_mask(R, V, rng);
  Tensor logits = cpu->alloc({R, V}, DType::F32);
  cpu->copy_from_host(logits, x.data());
  Tensor bits = cpu->alloc({R, bitmask_words(V)}, DType::I32);
  cpu->copy_from_host(bits, mask.data());
  cpu->apply_token_bitmask(logits, bits);
  const std::vector<float> got = cpu->to_host_f32(logits);
  const int W = bitmask_words(V);
  int masked = 0;
  for (int r = 0; r < R; ++r) {
    std::vector<float> want(x.begin() + r * V, x.begin() + (r + 1) * V);
    apply_token_bitmask_row(want, std::span<const int32_t>(mask).subspan(size_t(r * W), W));
    for (int i = 0; i < V; ++i) {
      ASSERT_EQ(got[size_t(r * V + i)], want[size_t(i)]) << "row " << r << " id " << i;
      masked += std::isinf(want[size_t(i)]);
    }
  }
  EXPECT_GT(masked, R * V / 4);  // random words mask about half the ids
  Tensor wrong = cpu->alloc({R, W + 1}, DType::I32);
  EXPECT_THROW(cpu->apply_token_bitmask(logits, wrong), Error);
}

TEST(TokenBitmask, DrawPicksOnlyAllowedTokens) {
  std::vector<float> row(64);
  for (int i = 0; i < 64; ++i) row[size_t(i)] = float(i);  // argmax would be 63
  RowSampling greedy;
  greedy.token_bitmask = {0, 0x00000100};  // only id 40
  EXPECT_EQ(draw_token(row, greedy), 40);
  RowSampling sampled;
  sampled.inv_temperature = 1;
  sampled.token_bitmask = {0x3, 0};  // ids 0 and 1
  for (uint64_t seed = 0; seed < 50; ++seed) {
    sampled.seed = seed;
    const int32_t t = draw_token(row, sampled);
    EXPECT_TRUE(t == 0 || t == 1) << t;
  }
}

// ---- Grammars through the engine (fake model, byte codec) ----

enum class Mode { Host, Device, DeviceAsync };

std::unique_ptr<Engine> fake_engine(Mode mode, double timeout_s = 30) {
  EngineConfig cfg;
  cfg.kv_cache_memory = std::to_string(int64_t(4096) * 16 * 8);
  cfg.async_scheduling = mode == Mode::DeviceAsync;
  cfg.grammar_compile_timeout_s = timeout_s;
  return std::make_unique<Engine>(
      cfg, std::make_unique<fake::FakeModel>(kVocab, 4096, mode != Mode::Host),
      std::make_unique<fake::FakeCodec>());
}

SamplingParams structured(StructuredOutput::Kind kind, std::string spec, int max_tokens = 400) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.structured = {kind, std::move(spec)};
  return p;
}

class StructuredModes : public ::testing::TestWithParam<Mode> {};

TEST_P(StructuredModes, RegexOutputMatchesAndStops) {
  auto engine = fake_engine(GetParam());
  const std::string re = "[a-c]{3}-[0-9]{2,4}(x|yz)";
  auto outs = engine->generate(std::vector<std::string>{"one", "two", "three"},
                               structured(StructuredOutput::Kind::Regex, re, 40));
  for (const CompletionOutput& o : outs) {
    EXPECT_TRUE(std::regex_match(o.text, std::regex(re))) << o.text;
    EXPECT_EQ(o.finish_reason, FinishReason::Stop) << o.text;
  }
}

TEST_P(StructuredModes, JsonSchemaOutputIsValid) {
  auto engine = fake_engine(GetParam());
  const std::string schema = R"({"type": "object", "properties": {
      "name": {"type": "string", "pattern": "^[a-z ]{1,8}$"},
      "age": {"type": "integer", "minimum": 0, "maximum": 120},
      "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
      "ok": {"type": "boolean"}}, "required": ["name", "age", "tags", "ok"]})";
  auto outs = engine->generate(std::vector<std::string>{"alpha", "beta"},
                               structured(StructuredOutput::Kind::JsonSchema, schema));
  for (const CompletionOutput& o : outs) {
    const nlohmann::json j = nlohmann::json::parse(o.text);  // throws when not JSON
    ASSERT_TRUE(j.is_object()) << o.text;
    // (A pattern, not maxLength: xgrammar 0.2.9's maxLength strings admit raw control bytes.)
    EXPECT_TRUE(j["name"].is_string() && j["name"].get<std::string>().size() <= 8) << o.text;
    EXPECT_TRUE(j["age"].is_number_integer() && j["age"] >= 0 && j["age"] <= 120) << o.text;
    ASSERT_TRUE(j["tags"].is_array() && j["tags"].size() <= 3) << o.text;
    for (const auto& t : j["tags"]) EXPECT_TRUE(t == "a" || t == "b") << o.text;
    EXPECT_TRUE(j["ok"].is_boolean()) << o.text;
    EXPECT_EQ(j.size(), 4u) << o.text;  // strict: no other keys
    EXPECT_EQ(o.finish_reason, FinishReason::Stop);
  }
}

TEST_P(StructuredModes, UnconstrainedBatchmatesAreUnchanged) {
  // A grammar row in the batch changes nothing for the others (batch invariance).
  SamplingParams plain = fake::greedy_ignoring_eos(24);
  auto alone = fake_engine(GetParam())->generate(std::vector<std::string>{"plain"}, plain);
  auto engine = fake_engine(GetParam());
  const RequestId g = engine->add_request("x", structured(StructuredOutput::Kind::Json, "", 80));
  const RequestId p = engine->add_request("plain", plain);
  std::map<RequestId, std::vector<int32_t>> toks;
  while (engine->has_unfinished())
    for (const RequestOutput& o : engine->step())
      toks[o.id].insert(toks[o.id].end(), o.new_token_ids.begin(), o.new_token_ids.end());
  EXPECT_EQ(toks[p], alone[0].token_ids);
  EXPECT_FALSE(toks[g].empty());
}

// A grammar that cannot be completed (x has no base case) leaves no token after "ab": the request
// ends as an abort that says why (the server answers 400 with it), in every sampling mode.
TEST_P(StructuredModes, AGrammarWithNoWayOnAbortsWithItsReason) {
  auto engine = fake_engine(GetParam());
  auto outs = engine->generate(
      std::vector<std::string>{"g"},
      structured(StructuredOutput::Kind::Grammar, "root ::= \"ab\" x\nx ::= x \"b\"", 20));
  EXPECT_EQ(outs[0].finish_reason, FinishReason::Abort);
  EXPECT_EQ(outs[0].text, "ab");
  EXPECT_NE(outs[0].abort_reason.find("nothing can follow the first 2 generated tokens"),
            std::string::npos)
      << outs[0].abort_reason;
  EXPECT_EQ(engine->stats().used_pages, 0);
}

INSTANTIATE_TEST_SUITE_P(Modes, StructuredModes,
                         ::testing::Values(Mode::Host, Mode::Device, Mode::DeviceAsync));

TEST(StructuredOutput, EbnfGrammarOutputIsInTheLanguage) {
  auto engine = fake_engine(Mode::DeviceAsync);
  const std::string g = R"g(root ::= "(" item (", " item)* ")"
item ::= [0-9]+ | "nil")g";
  auto outs = engine->generate(std::vector<std::string>{"g"},
                               structured(StructuredOutput::Kind::Grammar, g, 60));
  const std::regex lang(R"(\(([0-9]+|nil)(, ([0-9]+|nil))*\))");
  // The grammar ends the request only once complete; max_tokens may cut a long list first.
  if (outs[0].finish_reason == FinishReason::Stop)
    EXPECT_TRUE(std::regex_match(outs[0].text, lang)) << outs[0].text;
  else
    EXPECT_EQ(outs[0].finish_reason, FinishReason::Length);
  EXPECT_EQ(outs[0].text.front(), '(');
}

TEST(StructuredOutput, BadGrammarsAreInvalidArguments) {
  auto engine = fake_engine(Mode::Host);
  auto expect_invalid = [&](StructuredOutput::Kind k, const std::string& spec) {
    try {
      engine->compile_grammar({k, spec});
      ADD_FAILURE() << "compiled: " << spec;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << e.what();
      EXPECT_TRUE(std::string(e.what()).starts_with(structured_kind_name(k))) << e.what();
    }
  };
  expect_invalid(StructuredOutput::Kind::JsonSchema, R"({"type": "nonsense"})");
  expect_invalid(StructuredOutput::Kind::JsonSchema, "{not json");
  expect_invalid(StructuredOutput::Kind::Regex, "([a-z]");
  expect_invalid(StructuredOutput::Kind::Grammar, "root ::= undefined_rule");
  // The request fails the same way, and the engine goes on serving.
  EXPECT_THROW(engine->add_request("x", structured(StructuredOutput::Kind::Regex, "(")), Error);
  auto outs = engine->generate(std::vector<std::string>{"ok"},
                               structured(StructuredOutput::Kind::Regex, "[0-9]{4}"));
  EXPECT_TRUE(std::regex_match(outs[0].text, std::regex("[0-9]{4}"))) << outs[0].text;
}

TEST(StructuredOutput, CompilationPastTheTimeLimitIsRefused) {
  auto engine = fake_engine(Mode::Host, /*timeout_s=*/1e-6);
  try {
    engine->compile_grammar({StructuredOutput::Kind::JsonSchema, R"({"type": "object"})"});
    GTEST_SKIP() << "compiled within a microsecond";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("did not compile within"), std::string::npos) << e.what();
  }
}

TEST(GrammarCache, CachesByKindAndText) {
  fake::FakeCodec codec;
  GrammarCache cache(codec, kVocab, 30);
  const StructuredOutput a{StructuredOutput::Kind::Regex, "[ab]+"};
  cache.compile(a);
  cache.compile(a);
  EXPECT_EQ(cache.size(), 1u);
  cache.compile({StructuredOutput::Kind::Grammar, R"(root ::= [ab]+)"});
  EXPECT_EQ(cache.size(), 2u);
  // A matcher walks the grammar: "ab" then EOS (the codec's stop token) terminates it.
  std::unique_ptr<TokenGrammar> m = cache.matcher(a);
  std::vector<int32_t> bits(size_t(bitmask_words(kVocab)));
  m->fill_bitmask(bits);
  auto allowed = [&](int id) { return (uint32_t(bits[size_t(id / 32)]) >> (id % 32)) & 1u; };
  EXPECT_TRUE(allowed('a') && allowed('b'));
  EXPECT_FALSE(allowed('c') || allowed(fake::FakeCodec::kEos) || allowed(fake::FakeCodec::kBos));
  EXPECT_TRUE(m->accept('a'));
  EXPECT_FALSE(m->accept('c'));
  EXPECT_TRUE(m->accept('b'));
  m->fill_bitmask(bits);
  EXPECT_TRUE(allowed(fake::FakeCodec::kEos));
  EXPECT_FALSE(m->terminated());
  EXPECT_TRUE(m->accept(fake::FakeCodec::kEos));
  EXPECT_TRUE(m->terminated());
}

TEST(GrammarCache, SchemaKeywordsTheEngineCannotHoldAreRefused) {
  // xgrammar compiles these away; the output would break the schema (review of 2026-12-07).
  fake::FakeCodec codec;
  GrammarCache cache(codec, kVocab, 30);
  auto refusal = [&](const std::string& schema) -> std::string {
    try {
      cache.compile({StructuredOutput::Kind::JsonSchema, schema});
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << e.what();
      return e.what();
    }
    return "(compiled)";
  };
  EXPECT_NE(
      refusal(R"({"type":"object","properties":{"tags":{"type":"array","uniqueItems":true}}})")
          .find("'uniqueItems' at '/properties/tags'"),
      std::string::npos);
  EXPECT_NE(refusal(R"({"allOf":[{"type":"object"},{"type":"object"}]})").find("'allOf' at '/'"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"$defs":{"a":{"not":{"type":"string"}}},"$ref":"#/$defs/a"})")
                .find("'not' at '/$defs/a'"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"anyOf":[{"type":"array","contains":{"type":"integer"}}]})")
                .find("'contains' at '/anyOf/0'"),
            std::string::npos);
  // A property named like a keyword is a property; what the engine holds compiles.
  EXPECT_EQ(refusal(R"({"type":"object","properties":{"not":{"type":"string"},)"
                    R"("if":{"type":"integer","minimum":1}},"required":["not"]})"),
            "(compiled)");
}

// A schema the compiler refuses is named in the compiler's words, without its log prefix.
TEST(GrammarCache, CompilerErrorsReachTheClientWithoutTheLogPrefix) {
  fake::FakeCodec codec;
  GrammarCache cache(codec, kVocab, 30);
  try {
    cache.compile({StructuredOutput::Kind::JsonSchema, R"({"type":"array","items":5})"});
    ADD_FAILURE() << "compiled";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("json_schema: items must be"), std::string::npos) << m;
    EXPECT_EQ(m.find(".cc:"), std::string::npos) << m;
    EXPECT_NE(m.back(), '\n') << m;
  }
}

TEST(GrammarCache, CompilationsAtOnceAreBounded) {
  // A compilation past its time limit goes on; a client must not start them without bound.
  // The hook holds every compilation open until released, so the count does not depend on
  // how fast this machine compiles.
  fake::FakeCodec codec;
  GrammarCache cache(codec, kVocab, 0.05);
  struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
  };
  auto gate = std::make_shared<Gate>();
  cache.set_compile_hook([gate] {
    std::unique_lock<std::mutex> lock(gate->mu);
    gate->cv.wait(lock, [&] { return gate->open; });
  });
  auto regex = [](int n) {
    return StructuredOutput{StructuredOutput::Kind::Regex, "x{" + std::to_string(n) + "}"};
  };
  std::vector<ErrorKind> kinds;
  for (int i = 1; i <= 6; ++i) {
    try {
      cache.compile(regex(i));
      ADD_FAILURE() << "compiled " << i << " while the gate was shut";
    } catch (const Error& e) {
      kinds.push_back(e.kind());
      const bool busy = e.kind() == ErrorKind::Overloaded;
      EXPECT_NE(std::string(e.what()).find(busy ? "still compiling" : "did not compile within"),
                std::string::npos)
          << e.what();
    }
  }
  const std::vector<ErrorKind> want = {ErrorKind::InvalidArgument, ErrorKind::InvalidArgument,
                                       ErrorKind::InvalidArgument, ErrorKind::InvalidArgument,
                                       ErrorKind::Overloaded,      ErrorKind::Overloaded};
  EXPECT_EQ(kinds, want);
  EXPECT_EQ(cache.size(), 4u);  // the refused ones were never started
  {
    std::lock_guard<std::mutex> lock(gate->mu);
    gate->open = true;
  }
  gate->cv.notify_all();
  // Released: the held compilations finish and stay cached; new ones start again.
  auto compiles_soon = [&](const StructuredOutput& s) {
    for (int tries = 0; tries < 400; ++tries) {
      try {
        cache.compile(s);
        return true;
      } catch (const Error&) {
      }
    }
    return false;
  };
  EXPECT_TRUE(compiles_soon(regex(1)));
  EXPECT_TRUE(compiles_soon(regex(5)));
  std::unique_ptr<TokenGrammar> m = cache.matcher(regex(1));
  EXPECT_TRUE(m->accept('x'));
  EXPECT_FALSE(m->accept('x'));
}

TEST(GrammarCache, StaysBoundedSlow) {  // "Slow": 1100 compilations, not in the ASan run
  // A client can send a new grammar with every request: past 1024 entries the finished ones go.
  fake::FakeCodec codec;
  GrammarCache cache(codec, kVocab, 30);
  for (int i = 0; i < 1100; ++i)
    cache.compile({StructuredOutput::Kind::Regex, "x{" + std::to_string(i + 1) + "}"});
  EXPECT_LE(cache.size(), 1024u);
  EXPECT_GE(cache.size(), 1100u - 1024u);
  cache.compile({StructuredOutput::Kind::Regex, "x{1}"});  // dropped, compiled again
  std::unique_ptr<TokenGrammar> m = cache.matcher({StructuredOutput::Kind::Regex, "x{1}"});
  EXPECT_TRUE(m->accept('x'));
  EXPECT_FALSE(m->accept('x'));
}

}  // namespace test_structured_output
}  // namespace nc

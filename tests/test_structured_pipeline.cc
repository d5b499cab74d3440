// Structured output in the step pipeline (engine/step_pipeline.h): a grammar row's bitmask is
// filled between its step's forward pass and its draw, and structured steps go into flight with
// asynchronous scheduling. Over the fake model (pseudo-random logits: only the grammar makes the
// output well-formed) and over the real LlamaModel on the CPU backend (tiny-llama's random
// weights; its forward_async / sample_async halves), with the byte codec.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "engine/grammar.h"
#include "engine/step_model.h"
#include "engine/text_codec.h"
#include "fake_model.h"
#include "golden.h"
#include "nanocascade/engine.h"

namespace nc {
namespace test_structured_pipeline {

constexpr int kVocab = 300;

enum class Mode { Host, Device, DeviceAsync };

EngineConfig config(Mode mode) {
  EngineConfig cfg;
  cfg.kv_cache_memory = std::to_string(int64_t(4096) * 16 * 8);
  cfg.async_scheduling = mode == Mode::DeviceAsync;
  cfg.max_num_seqs = 8;
  return cfg;
}

std::unique_ptr<Engine> fake_engine(Mode mode) {
  return std::make_unique<Engine>(
      config(mode), std::make_unique<fake::FakeModel>(kVocab, 4096, mode != Mode::Host),
      std::make_unique<fake::FakeCodec>());
}

// The real model on the CPU backend (tiny-llama: vocabulary 512, ids past 257 are "special" to
// the byte codec, so the grammars never allow them).
std::unique_ptr<Engine> llama_engine(Mode mode) {
  EngineConfig cfg = config(mode);
  cfg.kv_cache_memory = "4MiB";
  cfg.device_sampling = mode != Mode::Host;
  return std::make_unique<Engine>(
      cfg, make_llama_step_model(testing::fixtures_dir() + "/tiny-llama", "cpu"),
      std::make_unique<fake::FakeCodec>());
}

SamplingParams structured(StructuredOutput::Kind kind, std::string spec, int max_tokens,
                          float temperature = 0) {
  SamplingParams p;
  p.temperature = temperature;
  p.seed = 11;
  p.max_tokens = max_tokens;
  p.structured = {kind, std::move(spec)};
  return p;
}

const char* kSchema = R"({"type": "object", "properties": {
    "id": {"type": "integer", "minimum": 0, "maximum": 999},
    "tag": {"enum": ["red", "green"]},
    "xs": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}},
  "required": ["id", "tag", "xs"], "additionalProperties": false})";

// Structured requests (a short regex that terminates early, a JSON schema greedy and sampled)
// mixed with free ones (greedy and sampled), all added at once.
std::vector<std::pair<std::string, SamplingParams>> mixed_batch() {
  using K = StructuredOutput::Kind;
  SamplingParams free_greedy = fake::greedy_ignoring_eos(30);
  SamplingParams free_sampled = free_greedy;
  free_sampled.temperature = 0.8f;
  free_sampled.seed = 5;
  return {{"short", structured(K::Regex, "[ab]{2}", 30)},
          {"json", structured(K::JsonSchema, kSchema, 60)},
          {"free", free_greedy},
          {"json sampled", structured(K::JsonSchema, kSchema, 60, 0.9f)},
          {"free sampled", free_sampled},
          {"digits", structured(K::Regex, "[0-9]{3,9}", 30, 0.7f)}};
}

// Tokens per request, in add order.
std::vector<std::vector<int32_t>> run(Engine& engine) {
  std::vector<RequestId> ids;
  for (const auto& [prompt, params] : mixed_batch())
    ids.push_back(engine.add_request(prompt, params));
  std::map<RequestId, std::vector<int32_t>> toks;
  while (engine.has_unfinished())
    for (const RequestOutput& o : engine.step())
      toks[o.id].insert(toks[o.id].end(), o.new_token_ids.begin(), o.new_token_ids.end());
  std::vector<std::vector<int32_t>> out;
  for (RequestId id : ids) out.push_back(toks[id]);
  return out;
}

void expect_well_formed(const std::vector<std::vector<int32_t>>& toks) {
  auto text = [](const std::vector<int32_t>& t) {
    std::string s;
    for (int32_t id : t)
      if (id < 256) s += char(id);
    return s;
  };
  EXPECT_EQ(text(toks[0]).size(), 2u) << text(toks[0]);  // the grammar ended it at once
  EXPECT_TRUE(std::regex_match(text(toks[0]), std::regex("[ab]{2}"))) << text(toks[0]);
  for (size_t i : {size_t(1), size_t(3)}) {
    const nlohmann::json j = nlohmann::json::parse(text(toks[i]));  // throws when not JSON
    EXPECT_TRUE(j["tag"] == "red" || j["tag"] == "green") << text(toks[i]);
  }
  EXPECT_EQ(toks[2].size(), 30u);
  EXPECT_TRUE(std::regex_match(text(toks[5]), std::regex("[0-9]{3,9}"))) << text(toks[5]);
}

// Once the step left in flight (generate() returns with one) is drained: every page free or
// cached.
void expect_no_leaks(Engine& engine) {
  for (int i = 0; i < 4 && engine.has_unfinished(); ++i) EXPECT_TRUE(engine.step().empty());
  EXPECT_FALSE(engine.has_unfinished());
  const EngineStats st = engine.stats();
  EXPECT_EQ(st.free_pages + st.cached_pages, st.total_pages);
}

// The host sampler (Mode::Host) draws sampled rows with other values than the model's draw
// (EngineConfig::device_sampling), so only its greedy rows are compared.
void expect_same_tokens(const std::function<std::unique_ptr<Engine>(Mode)>& make) {
  std::map<Mode, std::vector<std::vector<int32_t>>> got;
  for (Mode mode : {Mode::Host, Mode::Device, Mode::DeviceAsync}) {
    auto engine = make(mode);
    got[mode] = run(*engine);
    expect_well_formed(got[mode]);
    expect_no_leaks(*engine);
    // With async scheduling the structured steps overlapped the step before.
    if (mode == Mode::DeviceAsync) {
      EXPECT_GE(engine->stats().num_overlapped_steps, engine->stats().num_steps - 2);
    }
  }
  EXPECT_EQ(got[Mode::DeviceAsync], got[Mode::Device]);
  for (size_t greedy : {size_t(0), size_t(1), size_t(2)})
    EXPECT_EQ(got[Mode::Host][greedy], got[Mode::Device][greedy]) << "request " << greedy;
}

TEST(StructuredPipeline, FakeModelGivesTheSameTokensWithAsyncSchedulingOnAndOff) {
  expect_same_tokens(fake_engine);
}

TEST(StructuredPipeline, RealModelGivesTheSameTokensWithAsyncSchedulingOnAndOff) {
  expect_same_tokens(llama_engine);
}

TEST(StructuredPipeline, StructuredStepsGoIntoFlight) {
  // Only structured requests: before, none of their steps overlapped the next.
  auto engine = fake_engine(Mode::DeviceAsync);
  for (const char* p : {"a", "b", "c"})
    engine->add_request(p, structured(StructuredOutput::Kind::JsonSchema, kSchema, 60));
  while (engine->has_unfinished()) engine->step();
  const EngineStats st = engine->stats();
  // Every step but the first launched while the one before was in flight.
  EXPECT_EQ(st.num_overlapped_steps, st.num_steps - 1);
  EXPECT_GT(st.num_steps, 5);
  expect_no_leaks(*engine);
}

TEST(StructuredPipeline, AbortsAndCancellationsMidGrammarLeaveNoPages) {
  for (Mode mode : {Mode::Device, Mode::DeviceAsync}) {
    auto engine = fake_engine(mode);
    std::vector<RequestId> ids;
    for (const char* prompt : {"p0", "p1", "p2", "p3", "p4", "p5"})
      ids.push_back(
          engine->add_request(prompt, structured(StructuredOutput::Kind::JsonSchema, kSchema, 80)));
    int call = 0;
    std::map<RequestId, FinishReason> reasons;
    while (engine->has_unfinished()) {
      // Aborts at different points: before the first step, with a step in flight, late.
      if (call == 0) engine->abort(ids[0]);
      if (call == 2) engine->abort(ids[1]);
      if (call == 3) engine->abort(ids[2]);
      if (call == 6) engine->abort(ids[3]);
      for (const RequestOutput& o : engine->step())
        if (o.finished) reasons[o.id] = o.finish_reason;
      ++call;
    }
    EXPECT_EQ(reasons.size(), ids.size());
    for (int i = 0; i < 3; ++i) EXPECT_EQ(reasons[ids[size_t(i)]], FinishReason::Abort) << i;
    EXPECT_EQ(reasons[ids[5]], FinishReason::Stop);  // its grammar completed
    expect_no_leaks(*engine);
    // The engine goes on: a new structured request completes.
    auto outs = engine->generate(std::vector<std::string>{"again"},
                                 structured(StructuredOutput::Kind::Regex, "[ab]{2}", 10));
    EXPECT_EQ(outs[0].finish_reason, FinishReason::Stop);
    EXPECT_EQ(outs[0].text.size(), 2u);
    expect_no_leaks(*engine);
  }
}

TEST(GrammarCache, ACodecWithoutTextGetsASyntheticVocabulary) {
  // Random weights (--load-format dummy): text is token ids as numbers. Ids below 256 stand for
  // their byte, so a grammar can still be forced (bench --json-schema).
  std::unique_ptr<TextCodec> codec = make_number_codec(20000);
  GrammarCache cache(*codec, 20000, 30);
  std::unique_ptr<TokenGrammar> m = cache.matcher({StructuredOutput::Kind::Regex, "[ab]{2}"});
  EXPECT_FALSE(m->accept('c'));
  EXPECT_TRUE(m->accept('a'));
  EXPECT_TRUE(m->accept('b'));
  EXPECT_TRUE(m->terminated());  // no EOS in such a codec: complete ends it
  std::unique_ptr<TokenGrammar> j = cache.matcher({StructuredOutput::Kind::Json, ""});
  std::vector<int32_t> bits(size_t(bitmask_words(20000)));
  j->fill_bitmask(bits);
  auto allowed = [&](int id) { return (uint32_t(bits[size_t(id / 32)]) >> (id % 32)) & 1u; };
  EXPECT_TRUE(allowed('{'));
  EXPECT_FALSE(allowed('['));
  int pieces = 0;  // the longer pieces past 256 that may start an object
  for (int id = 256; id < 20000; ++id) pieces += int(allowed(id));
  EXPECT_GT(pieces, 0);
  EXPECT_LT(pieces, 20000 / 10);
}

}  // namespace test_structured_pipeline
}  // namespace nc

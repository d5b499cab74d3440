// The engine with sparse decode attention (EngineConfig::sparse_budget) over the tiny Llama
// fixture on the CPU: with a budget at least every context the tokens equal the dense engine's;
// with a small budget the kept page bounds equal the min/max of the page contents after every
// step (check_invariants) through appends, prefix-cache hits, forced cascade levels, preemption
// and host-tier reloads (float32 and fp8 caches), and the stats count the pages read and
// skipped; a request's budget 0 is dense (its tokens those of the dense engine) while its
// batchmates read sparsely; the memory plan counts the bounds in each page's bytes; the server's
// "sparse_budget" field reaches SamplingParams; per-KV-head selection over an HND cache keeps
// the bounds exact the same way and reads as many pages as per-request selection; bad budgets,
// models and per-head selection over NHD fail naming the value.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "core/error.h"
#include "engine/memory_plan.h"
#include "engine/step_model.h"
#include "fake_model.h"
#include "golden.h"
#include "nanocascade/engine.h"
#include "server/api_error.h"
#include "server/metrics.h"
#include "server/request_parser.h"

namespace nc {
namespace test_engine_sparse {

const std::string kModel = "tiny-llama";

struct EngineSetup {
  int budget = 0;  // 0: sparse off
  int pages = 512;
  int host_pages = 0;
  bool cascade = true;
  std::string kv_dtype = "auto";
  bool per_head = false;  // per-KV-head selection over an HND cache
};

SparseOptions sparse_options(int budget, bool per_head = false) {
  return SparseOptions{budget > 0, 1, 4, 1, per_head};  // sink page, 4-token window, layer 0 dense
}

std::unique_ptr<Engine> make_engine(const EngineSetup& s) {
  StepModelOptions o;
  o.sparse = sparse_options(s.budget, s.per_head);
  o.kv_cache_dtype = s.kv_dtype;
  auto model = make_llama_step_model(testing::fixtures_dir() + "/" + kModel, o);
  const int64_t page = model->kv_bytes_per_page(4) + model->bounds_bytes_per_page();
  EngineConfig cfg;
  cfg.page_size = 4;
  cfg.max_num_batched_tokens = 48;
  cfg.max_num_seqs = 4;
  cfg.kv_cache_memory = std::to_string(page * s.pages);
  if (s.host_pages) cfg.host_kv_cache = std::to_string(model->kv_bytes_per_page(4) * s.host_pages);
  cfg.cascade_force = s.cascade;
  cfg.kv_cache_dtype = s.kv_dtype;
  cfg.check_invariants = true;  // includes the bounds against the page contents
  cfg.sparse_budget = s.budget;
  cfg.sparse_sink_pages = 1;
  cfg.sparse_window = 4;
  cfg.sparse_dense_layers = 1;
  cfg.sparse_per_head = s.per_head;
  if (s.per_head) cfg.kv_layout = "HND";
  return std::make_unique<Engine>(cfg, std::move(model), std::make_unique<fake::FakeCodec>());
}

// Four prompts of 40..70 tokens behind a shared 16-token prefix, twice (the second wave hits the
// prefix cache); 24 greedy tokens each.
std::vector<std::vector<int32_t>> prompts() {
  std::vector<std::vector<int32_t>> out;
  for (int p = 0; p < 4; ++p) {
    std::vector<int32_t> ids;
    for (int i = 0; i < 16; ++i) ids.push_back(int32_t(100 + i));
    for (int i = 0; i < 24 + 10 * p; ++i) ids.push_back(int32_t((i * 31 + p * 7 + 3) % 250));
    out.push_back(ids);
  }
  return out;
}

struct Result {
  std::vector<std::vector<int32_t>> tokens;
  EngineStats stats;
};

Result run_engine(const EngineSetup& s, const std::vector<int>& request_budgets = {}) {
  auto e = make_engine(s);
  SamplingParams sp;
  sp.temperature = 0;
  sp.max_tokens = 24;
  sp.ignore_eos = true;
  Result r;
  for (int wave = 0; wave < 2; ++wave) {
    const auto ps = prompts();
    std::vector<RequestId> ids;
    for (size_t i = 0; i < ps.size(); ++i) {
      SamplingParams p = sp;
      if (!request_budgets.empty()) p.sparse_budget = request_budgets[i];
      ids.push_back(e->add_request(ps[i], p));
    }
    std::map<RequestId, std::vector<int32_t>> got;
    while (e->has_unfinished())
      for (const RequestOutput& o : e->step())
        got[o.id].insert(got[o.id].end(), o.new_token_ids.begin(), o.new_token_ids.end());
    for (RequestId id : ids) r.tokens.push_back(got[id]);
  }
  r.stats = e->stats();
  EXPECT_EQ(r.stats.used_pages, 0);
  return r;
}

TEST(EngineSparse, BudgetAtLeastTheContextGivesTheDenseTokens) {
  const Result dense = run_engine({}), wide = run_engine({.budget = 256});
  ASSERT_EQ(dense.tokens.size(), 8u);
  EXPECT_EQ(wide.tokens, dense.tokens);
  EXPECT_EQ(wide.stats.num_sparse_pages_read, 0);  // nothing exceeded the budget
  EXPECT_GT(dense.stats.cache.hit_tokens, 0);
  EXPECT_GT(dense.stats.cache.cascade_steps, 0);
}

TEST(EngineSparse, BoundsStayExactThroughHitsCascadePreemptionAndReloads) {
  // Small budget: selection in every decode step past 16 own tokens.
  const Result roomy = run_engine({.budget = 16});
  EXPECT_GT(roomy.stats.num_sparse_pages_read, 0);
  EXPECT_GT(roomy.stats.num_sparse_pages_skipped, 0);
  EXPECT_GT(roomy.stats.cache.hit_tokens, 0);
  EXPECT_GT(roomy.stats.cache.cascade_steps, 0);
  // Few pages: preemption; a host tier: evicted prefixes come back by copy.
  const Result tight = run_engine({.budget = 16, .pages = 40, .host_pages = 64});
  EXPECT_GT(tight.stats.num_preemptions, 0);
  EXPECT_GT(tight.stats.host.reloaded_pages, 0);
  EXPECT_GT(tight.stats.num_sparse_pages_skipped, 0);
  // An fp8 cache: bounds of the decoded, scaled keys.
  const Result fp8 = run_engine({.budget = 16, .pages = 40, .host_pages = 64, .kv_dtype = "fp8"});
  EXPECT_GT(fp8.stats.num_sparse_pages_skipped, 0);
  EXPECT_GT(fp8.stats.host.reloaded_pages, 0);
  // Without cascade the own level holds every page of a request, so more of them are skipped.
  const Result flat = run_engine({.budget = 16, .cascade = false});
  EXPECT_GT(flat.stats.num_sparse_pages_skipped, roomy.stats.num_sparse_pages_skipped);
  // The selection changes what is read, so (on this random-ish model) some tokens differ from
  // dense; which ones is not asserted.
  std::string text;
  server::render_engine_metrics(flat.stats, text);
  EXPECT_NE(text.find("nanocascade_sparse_pages_skipped_total " +
                      std::to_string(flat.stats.num_sparse_pages_skipped) + "\n"),
            std::string::npos)
      << text;
}

// Per-KV-head selection (HND): dense tokens with a budget at least every context; with a small
// budget, exact bounds through hits, cascade, preemption and reloads, and as many pages read and
// skipped as per-request selection (every head keeps the per-request count of pages).
TEST(EngineSparse, PerHeadSelectionThroughTheEngine) {
  const Result dense = run_engine({}), wide = run_engine({.budget = 256, .per_head = true});
  EXPECT_EQ(wide.tokens, dense.tokens);
  const Result per_request = run_engine({.budget = 16, .cascade = false});
  const Result per_head = run_engine({.budget = 16, .cascade = false, .per_head = true});
  EXPECT_GT(per_head.stats.num_sparse_pages_skipped, 0);
  EXPECT_EQ(per_head.stats.num_sparse_pages_read, per_request.stats.num_sparse_pages_read);
  EXPECT_EQ(per_head.stats.num_sparse_pages_skipped, per_request.stats.num_sparse_pages_skipped);
  const Result tight = run_engine({.budget = 16, .pages = 40, .host_pages = 64, .per_head = true});
  EXPECT_GT(tight.stats.num_preemptions, 0);
  EXPECT_GT(tight.stats.host.reloaded_pages, 0);
  EXPECT_GT(tight.stats.num_sparse_pages_skipped, 0);
  EXPECT_GT(tight.stats.cache.cascade_steps, 0);
  // An fp8 cache: the head pages are copied as codes.
  const Result fp8 = run_engine(
      {.budget = 16, .pages = 40, .host_pages = 64, .kv_dtype = "fp8", .per_head = true});
  EXPECT_GT(fp8.stats.num_sparse_pages_skipped, 0);
}

TEST(EngineSparse, ARequestWithBudgetZeroIsDense) {
  const Result dense = run_engine({.cascade = false});
  const Result mixed = run_engine({.budget = 16, .cascade = false}, {0, 16, 0, -1});
  ASSERT_EQ(mixed.tokens.size(), 8u);
  for (size_t i : {0u, 2u, 4u, 6u}) EXPECT_EQ(mixed.tokens[i], dense.tokens[i]) << "request " << i;
  EXPECT_GT(mixed.stats.num_sparse_pages_skipped, 0);
}

TEST(EngineSparse, MemoryPlanCountsTheBounds) {
  EngineConfig cfg;
  cfg.model = testing::fixtures_dir() + "/" + kModel;
  cfg.kv_cache_memory = "1MiB";
  const MemoryPlan dense = plan_memory_for_config(cfg, 64);
  cfg.sparse_budget = 64;
  cfg.sparse_dense_layers = 1;
  const MemoryPlan sparse = plan_memory_for_config(cfg, 64);
  EXPECT_EQ(dense.bounds_bytes_per_page, 0);
  // One sparse layer: min and max of 2 heads x 16 dims, float32.
  EXPECT_EQ(sparse.bounds_bytes_per_page, 2 * 2 * 16 * 4);
  EXPECT_EQ(sparse.bytes_per_page, dense.bytes_per_page);
  EXPECT_EQ(sparse.pages, (1 << 20) / (sparse.bytes_per_page + sparse.bounds_bytes_per_page));
  EXPECT_LT(sparse.pages, dense.pages);
  EXPECT_EQ(sparse.bounds_bytes, sparse.pages * sparse.bounds_bytes_per_page);
}

template <typename F>
void expect_error(F&& f, ErrorKind kind, const std::string& text) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one naming '" << text << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

TEST(EngineSparse, BadBudgetsAndModelsFailNamingTheValue) {
  auto dense = make_engine({});
  SamplingParams sp;
  sp.sparse_budget = 64;
  expect_error(
      [&] {
        dense->add_request(std::vector<int32_t>{1, 2, 3}, sp);
      },
      ErrorKind::InvalidArgument, "sparse_budget 64: sparse attention is off");
  auto sparse = make_engine({.budget = 16});
  sp.sparse_budget = 7;  // below 1 page of 4 + 4 tokens
  expect_error(
      [&] {
        sparse->add_request(std::vector<int32_t>{1, 2, 3}, sp);
      },
      ErrorKind::InvalidArgument, "sparse_budget 7: below");
  sp.sparse_budget = -2;
  expect_error(
      [&] {
        sparse->add_request(std::vector<int32_t>{1, 2, 3}, sp);
      },
      ErrorKind::InvalidArgument, "sparse_budget must be -1");
  // Engine(cfg) over a model built from it (the fixture has no tokenizer: a fake codec).
  auto engine_of = [](const EngineConfig& c) {
    Engine e(c, make_step_model(c), std::make_unique<fake::FakeCodec>());
  };
  EngineConfig cfg;
  cfg.model = testing::fixtures_dir() + "/" + kModel;
  cfg.kv_cache_memory = "1MiB";
  cfg.sparse_budget = 100;
  cfg.sparse_dense_layers = 1;
  cfg.sparse_window = 128;  // 16 + 128 > 100
  expect_error([&] { engine_of(cfg); }, ErrorKind::InvalidArgument,
               "sparse_budget 100 below the sinks + window");
  cfg.sparse_budget = 256;
  cfg.sparse_dense_layers = 2;  // all of tiny-llama's layers
  expect_error([&] { engine_of(cfg); }, ErrorKind::Unsupported, "not more than the 2 dense layers");
  cfg.sparse_dense_layers = 1;
  cfg.sparse_per_head = true;  // NHD, the default layout
  expect_error([&] { engine_of(cfg); }, ErrorKind::InvalidArgument,
               "sparse_per_head needs kv_layout HND (a KV head's block of a page is contiguous "
               "only there), got kv_layout NHD");
  cfg.sparse_per_head = false;
  cfg.sparse_dense_layers = 2;
  cfg.model = testing::fixtures_dir() + "/tiny-deepseek-v2";
  cfg.sparse_dense_layers = 0;
  expect_error([&] { engine_of(cfg); }, ErrorKind::Unsupported, "MLA");
  // A model that keeps no bounds under an engine that asks for them.
  cfg.model = testing::fixtures_dir() + "/" + kModel;
  cfg.sparse_dense_layers = 1;
  StepModelOptions dense_opts;
  expect_error(
      [&] {
        Engine e(cfg, make_llama_step_model(cfg.model, dense_opts),
                 std::make_unique<fake::FakeCodec>());
      },
      ErrorKind::Unsupported, "keeps no page bounds");
}

TEST(EngineSparse, RequestFieldSparseBudget) {
  using server::ApiKind;
  auto r = server::parse_request(ApiKind::Completion,
                                 R"({"model":"m","prompt":"x","sparse_budget":512})");
  EXPECT_EQ(r.sampling.sparse_budget, 512);
  r = server::parse_request(ApiKind::Completion, R"({"model":"m","prompt":"x"})");
  EXPECT_EQ(r.sampling.sparse_budget, -1);  // the engine's
  for (const char* body : {R"({"model":"m","prompt":"x","sparse_budget":-2})",
                           R"({"model":"m","prompt":"x","sparse_budget":"many"})"}) {
    try {
      server::parse_request(ApiKind::Completion, body);
      ADD_FAILURE() << "accepted: " << body;
    } catch (const server::ApiError& e) {
      EXPECT_EQ(e.status(), 400) << body;
      EXPECT_EQ(e.param(), "sparse_budget") << body;
    }
  }
}

}  // namespace test_engine_sparse
}  // namespace nc

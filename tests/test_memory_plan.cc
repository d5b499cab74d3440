// The memory plan (engine/memory_plan.h) is what the engine then allocates: over the fake model
// for budgets in bytes, capped by max_num_seqs and by the context, and over the embedded SmolLM2
// on the CPU (weights, workspace and pages measured by `nanocascade memory`'s path equal those
// of an Engine made from the same config). A plan that cannot fit one request, or a request
// length beyond the context, is an error naming the sizes.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "engine/memory_plan.h"
#include "fake_model.h"
#include "nanocascade/engine.h"

namespace nc {
namespace {

EngineConfig fake_config(int page_size, const std::string& kv, int max_seqs, int max_len) {
  EngineConfig cfg;
  cfg.page_size = page_size;
  cfg.kv_cache_memory = kv;
  cfg.max_num_seqs = max_seqs;
  cfg.max_model_len = max_len;
  return cfg;
}

void expect_plan_equals_engine(const EngineConfig& cfg, int model_max) {
  fake::FakeModel model(300, model_max);
  const int len = resolve_max_model_len(cfg, model);
  const MemoryPlan plan = plan_memory(cfg, model, len);
  Engine e(cfg, std::make_unique<fake::FakeModel>(300, model_max),
           std::make_unique<fake::FakeCodec>());
  const EngineStats st = e.stats();
  EXPECT_EQ(plan.pages, st.total_pages) << cfg.kv_cache_memory;
  EXPECT_EQ(plan.kv_bytes, st.kv_cache_bytes);
  EXPECT_EQ(plan.max_model_len, st.max_model_len);
  EXPECT_EQ(plan.free_memory_bytes, st.free_memory_bytes);
  EXPECT_EQ(plan.tokens, int64_t(st.total_pages) * cfg.page_size);
  EXPECT_EQ(plan.bytes_per_page, int64_t(cfg.page_size) * 8);  // the fake's 8 bytes per slot
}

TEST(MemoryPlan, EqualsWhatTheEngineAllocatesOverTheFakeModel) {
  expect_plan_equals_engine(fake_config(16, "100000", 256, 0), 4096);  // budget-bound: 781 pages
  expect_plan_equals_engine(fake_config(4, "1MiB", 2, 100), 4096);     // capped: 2 * 25 pages
  expect_plan_equals_engine(fake_config(8, "", 256, 64), 4096);        // CPU default, capped
}

TEST(MemoryPlan, PerRequestFigures) {
  fake::FakeModel model(300, 4096);
  const EngineConfig cfg = fake_config(16, std::to_string(100 * 16 * 8), 3, 0);  // 100 pages
  const MemoryPlan p = plan_memory(cfg, model, 4096, 1000);
  EXPECT_EQ(p.pages, 100);
  EXPECT_EQ(p.pages_per_request, 63);  // ceil(1000 / 16)
  EXPECT_EQ(p.requests_that_fit, 1);
  const MemoryPlan q = plan_memory(cfg, model, 4096, 160);
  EXPECT_EQ(q.pages_per_request, 10);
  EXPECT_EQ(q.requests_that_fit, 10);
  EXPECT_EQ(q.requests_at_once, 3);                            // max_num_seqs
  EXPECT_EQ(plan_memory(cfg, model, 4096).request_len, 4096);  // default: the context
}

TEST(MemoryPlan, NotOneRequestFitsIsAnErrorNamingTheSizes) {
  fake::FakeModel model(300, 4096);
  const EngineConfig cfg = fake_config(16, std::to_string(10 * 16 * 8), 256, 0);  // 10 pages
  const MemoryPlan p = plan_memory(cfg, model, 4096, 2000);
  EXPECT_EQ(p.requests_that_fit, 0);
  try {
    check_one_request_fits(p);
    FAIL() << "expected nc::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("2000 tokens"), std::string::npos) << msg;
    EXPECT_NE(msg.find("125 pages"), std::string::npos) << msg;
    EXPECT_NE(msg.find("holds 10 pages"), std::string::npos) << msg;
  }
  EXPECT_THROW(plan_memory(cfg, model, 4096, 5000), Error);  // beyond the context
  EXPECT_THROW(plan_memory(cfg, model, 4096, -3), Error);
}

// On the CPU the pool's pages come as they are written: a plan past the machine's memory would
// run until real load and then meet the OOM killer. It is refused at once, naming the sizes.
TEST(MemoryPlan, MoreThanTheMachinesMemoryIsRefusedOnTheCpu) {
  fake::FakeModel model(300, 4096);
  model.weight_bytes = int64_t(1) << 52;  // 4 PiB of "weights"
  const EngineConfig cfg = fake_config(16, "1MiB", 256, 0);
  try {
    plan_memory(cfg, model, 4096);
    FAIL() << "a plan past the machine's memory was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("more than this machine's physical memory"),
              std::string::npos)
        << e.what();
  }
  model.weight_bytes = 0;
  EXPECT_NO_THROW(plan_memory(cfg, model, 4096));
}

TEST(MemoryPlan, EqualsTheEngineOverTheEmbeddedModel) {
  EngineConfig cfg;
  cfg.model = EngineConfig::default_model_path();
  if (!std::filesystem::exists(cfg.model)) GTEST_SKIP() << "no " << cfg.model;
  cfg.max_model_len = 2048;
  cfg.max_num_seqs = 8;
  cfg.max_num_batched_tokens = 256;
  for (const std::string& kv : {std::string(""), std::string("80MiB")}) {
    cfg.kv_cache_memory = kv;
    const MemoryPlan plan = plan_memory_for_config(cfg, 1000);
    Engine e(cfg);
    const EngineStats st = e.stats();
    EXPECT_GT(plan.weight_bytes, 0);
    EXPECT_EQ(plan.weight_bytes, st.weight_bytes) << kv;
    EXPECT_EQ(plan.workspace_bytes, st.workspace_bytes) << kv;
    EXPECT_EQ(plan.pages, st.total_pages) << kv;
    EXPECT_EQ(plan.kv_bytes, st.kv_cache_bytes) << kv;
    EXPECT_EQ(plan.max_model_len, st.max_model_len) << kv;
    EXPECT_EQ(plan.pages_per_request, 63) << kv;
    EXPECT_EQ(plan.requests_that_fit, plan.pages / 63) << kv;
  }
}

}  // namespace
}  // namespace nc

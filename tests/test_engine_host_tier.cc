// The engine with the prefix cache's host tier (EngineConfig::host_kv_cache) over the fake model,
// whose pages hold each slot's token and position and whose logits hash the whole history read
// back through the page table (a page restored wrong changes the tokens): a multi-turn workload
// whose conversations exceed the device pages gives the same tokens with the tier on and off
// while the tier serves hits and saves prefill; a random workload with preemption, aborts and
// eviction keeps the invariants (checked after every step) and the hooks' counts reconciled with
// the page counts of both tiers; a tier larger than the machine fails before any work.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "core/error.h"
#include "engine/memory_plan.h"
#include "fake_model.h"
#include "kv/page_pool.h"
#include "nanocascade/engine.h"
#include "nanocascade/memory_hooks.h"

namespace nc {
namespace test_engine_host_tier {

constexpr int kVocab = 300;

struct TierSetup {
  int page_size = 4;
  int device_pages = 40;
  int host_pages = 0;  // 0: no tier
  bool async = false;
  int max_num_seqs = 4;
  int64_t weight_bytes = int64_t(1) << 24;  // enough that a reload beats recomputing
};

std::unique_ptr<Engine> make_engine(const TierSetup& s, fake::FakeModel** model_out = nullptr) {
  EngineConfig cfg;
  cfg.page_size = s.page_size;
  cfg.max_num_batched_tokens = 64;
  cfg.max_num_seqs = s.max_num_seqs;
  const int64_t page_bytes = int64_t(s.page_size) * 8;  // the fake model's 8 bytes a slot
  cfg.kv_cache_memory = std::to_string(s.device_pages * page_bytes);
  if (s.host_pages > 0) cfg.host_kv_cache = std::to_string(s.host_pages * page_bytes);
  cfg.async_scheduling = s.async;
  cfg.check_invariants = true;
  auto model = std::make_unique<fake::FakeModel>(kVocab, 4096, s.async);
  model->weight_bytes = s.weight_bytes;
  if (model_out) *model_out = model.get();
  return std::make_unique<Engine>(cfg, std::move(model), std::make_unique<fake::FakeCodec>());
}

struct ChatRun {
  std::vector<std::vector<int32_t>> outputs;  // per request, in order
  EngineStats stats;
  int64_t pages_to_device = 0;
};

// 12 conversations x 5 turns behind one 24-token system prompt; each turn adds 9 user tokens and
// generates 7; every turn's requests run together (at most max_num_seqs at once).
ChatRun run_chat(const TierSetup& s) {
  fake::FakeModel* model = nullptr;
  auto e = make_engine(s, &model);
  std::mt19937 rng(11);
  std::vector<int32_t> system(24);
  for (int32_t& t : system) t = int32_t(rng() % 256);
  std::vector<std::vector<int32_t>> history(12, system);
  ChatRun run;
  for (int turn = 0; turn < 5; ++turn) {
    std::vector<std::vector<int32_t>> prompts;
    for (auto& h : history) {
      for (int k = 0; k < 9; ++k) h.push_back(int32_t(rng() % 256));
      prompts.push_back(h);
    }
    SamplingParams p = fake::greedy_ignoring_eos(7);
    if (turn % 2) p.temperature = 0.9f, p.seed = uint64_t(turn);
    const std::vector<CompletionOutput> outs = e->generate(prompts, p);
    for (size_t i = 0; i < outs.size(); ++i) {
      run.outputs.push_back(outs[i].token_ids);
      history[i].insert(history[i].end(), outs[i].token_ids.begin(), outs[i].token_ids.end());
    }
  }
  run.stats = e->stats();
  run.pages_to_device = model->pages_to_device;
  return run;
}

class EngineHostTier : public ::testing::TestWithParam<bool> {};

TEST_P(EngineHostTier, MultiTurnChatGivesTheSameTokensWithTheTierOnAndOff) {
  TierSetup off;
  off.async = GetParam();
  TierSetup on = off;
  on.host_pages = 400;
  const ChatRun a = run_chat(off), b = run_chat(on);
  EXPECT_EQ(a.outputs, b.outputs);
  // The histories (12 x up to ~100 tokens) exceed the 40 pages x 4 tokens on the device.
  EXPECT_GT(a.stats.cache.pages_evicted, 0);
  EXPECT_EQ(a.stats.host.capacity_pages, 0);
  EXPECT_EQ(b.stats.host.capacity_pages, 400);
  EXPECT_GT(b.stats.host.hit_tokens, 0);
  EXPECT_GT(b.stats.host.reloaded_pages, 0);
  EXPECT_EQ(b.stats.host.reloaded_pages, b.stats.cache.pages_restored);
  EXPECT_EQ(b.stats.host.reloaded_pages, b.pages_to_device);  // every restore was copied
  EXPECT_EQ(b.stats.host.bytes_to_device, b.stats.host.reloaded_pages * 4 * 8);
  EXPECT_GT(b.stats.cache.hit_tokens, a.stats.cache.hit_tokens);
  EXPECT_LT(b.stats.num_prompt_tokens_computed, a.stats.num_prompt_tokens_computed);
  std::printf(
      "[ host tier, %s ] prefill tokens %lld off vs %lld on; host hits %lld tokens, "
      "%lld pages reloaded, %lld offloaded, %lld dropped\n",
      GetParam() ? "async" : "sync", (long long)a.stats.num_prompt_tokens_computed,
      (long long)b.stats.num_prompt_tokens_computed, (long long)b.stats.host.hit_tokens,
      (long long)b.stats.host.reloaded_pages, (long long)b.stats.host.offloaded_pages,
      (long long)b.stats.host.dropped_pages);
}

TEST_P(EngineHostTier, ASmallTierDropsPagesAndStillGivesTheSameTokens) {
  TierSetup off;
  off.async = GetParam();
  TierSetup on = off;
  on.host_pages = 24;
  const ChatRun a = run_chat(off), b = run_chat(on);
  EXPECT_EQ(a.outputs, b.outputs);
  EXPECT_GT(b.stats.host.dropped_pages, 0);
  EXPECT_LE(b.stats.host.used_pages, 24);
}

// Checks each event against the previous one for both tiers and sums the deltas.
struct Recorder : MemoryHook {
  std::vector<MemoryStepEvent> events;
  PageTransitions sum;
  void on_step(const MemoryStepEvent& ev) override {
    const PageStateCounts before = events.empty()
                                       ? PageStateCounts{ev.pages.total, ev.pages.total, 0, 0}
                                       : events.back().pages;
    const int host_before = events.empty() ? 0 : events.back().host.used;
    const PageTransitions& d = ev.delta;
    EXPECT_EQ(ev.pages.free, before.free - d.allocated + d.freed + d.evicted - d.restored);
    EXPECT_EQ(ev.pages.used, before.used + d.allocated - d.freed - d.cached + d.reloaded);
    EXPECT_EQ(ev.pages.cached, before.cached + d.cached - d.evicted - d.reloaded + d.restored);
    EXPECT_EQ(ev.host.used, host_before + d.offloaded - d.restored - d.dropped);
    EXPECT_LE(d.offloaded, d.evicted);  // an offload is an eviction whose K/V went to the host
    sum.allocated += d.allocated, sum.freed += d.freed, sum.cached += d.cached;
    sum.evicted += d.evicted, sum.reloaded += d.reloaded, sum.restored += d.restored;
    sum.offloaded += d.offloaded, sum.dropped += d.dropped;
    events.push_back(ev);
  }
};

TEST_P(EngineHostTier, RandomWorkloadKeepsInvariantsAndHooksReconciled) {
  TierSetup s;
  s.async = GetParam();
  s.device_pages = 30;
  s.host_pages = 60;
  s.max_num_seqs = 12;
  auto e = make_engine(s);
  auto rec = std::make_shared<Recorder>();
  e->add_memory_hook(rec);
  std::mt19937 rng(5);
  std::vector<std::vector<int32_t>> systems(3, std::vector<int32_t>(20));
  for (auto& sys : systems)
    for (int32_t& t : sys) t = int32_t(rng() % 256);
  std::vector<RequestId> ids;
  std::set<RequestId> finished;
  int step = 0;
  for (int wave = 0; wave < 4; ++wave) {
    for (int i = 0; i < 25; ++i) {
      std::vector<int32_t> prompt = systems[rng() % systems.size()];
      for (int k = 1 + int(rng() % 30); k > 0; --k) prompt.push_back(int32_t(rng() % 256));
      SamplingParams p = fake::greedy_ignoring_eos(1 + int(rng() % 30));
      if (i % 3) p.temperature = 0.8f, p.seed = uint64_t(i);
      ids.push_back(e->add_request(prompt, p));
    }
    // Invariants are checked inside every step (cfg.check_invariants): a failure throws.
    for (int k = 0; e->has_unfinished(); ++k, ++step) {
      if (k == 2 || k == 7)
        for (int a = 0; a < 3; ++a) e->abort(ids[rng() % ids.size()]);
      for (const RequestOutput& o : e->step())
        if (o.finished) finished.insert(o.id);
    }
  }
  EXPECT_EQ(finished.size(), ids.size());
  ASSERT_EQ(int(rec->events.size()), step);
  const MemoryStepEvent& last = rec->events.back();
  const PageTransitions& t = last.total;
  EXPECT_EQ(rec->sum.allocated, t.allocated);
  EXPECT_EQ(rec->sum.evicted, t.evicted);
  EXPECT_EQ(rec->sum.restored, t.restored);
  EXPECT_EQ(rec->sum.offloaded, t.offloaded);
  EXPECT_EQ(rec->sum.dropped, t.dropped);
  const EngineStats st = e->stats();
  EXPECT_GT(st.num_preemptions, 0);
  EXPECT_GT(t.offloaded, 0);
  EXPECT_GT(t.restored, 0);
  EXPECT_EQ(st.host.offloaded_pages, t.offloaded);
  EXPECT_EQ(st.host.reloaded_pages, t.restored);
  EXPECT_EQ(st.host.dropped_pages, t.dropped);
  EXPECT_EQ(st.host.used_pages, last.host.used);
  EXPECT_EQ(last.host.total, 60);
  EXPECT_EQ(last.pages.used, 0);  // nothing running, nothing leaked
}

std::string mode_name(const ::testing::TestParamInfo<bool>& p) {
  return p.param ? "async" : "sync";
}
INSTANTIATE_TEST_SUITE_P(SyncAndAsync, EngineHostTier, ::testing::Bool(), mode_name);

// A fake model whose next n-th KV page transfer fails (the host tier's copies).
struct FailingTransferModel : fake::FakeModel {
  using FakeModel::FakeModel;
  int fail_next = 0;
  void transfer_kv(std::span<const KVPageCopy> copies) override {
    if (fail_next > 0 && --fail_next == 0) fail("injected transfer failure");
    FakeModel::transfer_kv(copies);
  }
};

// A host-tier copy that fails leaves the tree naming pages whose K/V never arrived: the engine
// then runs no step (an error naming the failure, and health_error says it) rather than serve a
// later hit's stale prefix as if it were right.
TEST(EngineHostTierFaults, AFailedCopyStopsTheEngineInsteadOfServingStaleKV) {
  for (const bool async : {false, true}) {
    SCOPED_TRACE(async ? "async" : "sync");
    EngineConfig cfg;
    cfg.async_scheduling = async;
    cfg.page_size = 4;
    cfg.max_num_batched_tokens = 64;
    cfg.kv_cache_memory = std::to_string(8 * 4 * 8);
    cfg.host_kv_cache = std::to_string(16 * 4 * 8);
    cfg.check_invariants = true;
    auto m = std::make_unique<FailingTransferModel>(kVocab, 4096, async);
    m->weight_bytes = int64_t(1) << 24;
    FailingTransferModel* model = m.get();
    Engine e(cfg, std::move(m), std::make_unique<fake::FakeCodec>());
    std::vector<int32_t> a, b;
    for (int i = 0; i < 17; ++i) a.push_back(10 + i), b.push_back(100 + i);
    (void)e.generate({a}, fake::greedy_ignoring_eos(3));  // a's pages cached
    EXPECT_EQ(e.health_error(), "");
    model->fail_next = 1;  // b's step offloads a's pages to the host: that copy fails
    EXPECT_THROW(e.generate({b}, fake::greedy_ignoring_eos(3)), Error);
    EXPECT_NE(e.health_error().find("injected transfer failure"), std::string::npos)
        << e.health_error();
    // What it still held finishes as aborted in one step, and then it holds nothing (a server's
    // loop goes idle and reports health_error, rather than spin on failing steps).
    for (const RequestOutput& o : e.step()) EXPECT_EQ(o.finish_reason, FinishReason::Abort);
    EXPECT_FALSE(e.has_unfinished());
    EXPECT_EQ(e.stats().used_pages, 0);
    try {
      e.add_request(a, fake::greedy_ignoring_eos(3));
      FAIL() << "a request was taken over the stale prefix cache";
    } catch (const Error& err) {
      EXPECT_NE(std::string(err.what()).find("host-tier KV page copy failed"), std::string::npos)
          << err.what();
    }
  }
}

TEST(EngineHostTierConfig, ATierLargerThanTheMachineFailsBeforeTheModelLoads) {
  EngineConfig cfg;
  cfg.model = "/nonexistent/model.gguf";  // never reached
  cfg.host_kv_cache = std::to_string(physical_memory_bytes() + (int64_t(1) << 30));
  try {
    Engine e(cfg);
    FAIL() << "no error";
  } catch (const Error& err) {
    const std::string m = err.what();
    EXPECT_NE(m.find("host kv cache"), std::string::npos) << m;
    EXPECT_NE(m.find("physical memory"), std::string::npos) << m;
    EXPECT_NE(m.find(std::to_string(physical_memory_bytes())), std::string::npos) << m;
  }
  cfg.host_kv_cache = "lots";
  EXPECT_THROW(Engine{cfg}, Error);
}

// The budget is the same on either backend (CUDA pins it; tests/gpu/test_cuda_kv_copy.cc).
TEST(EngineHostTierConfig, BothBackendsSizeTheTierAlike) {
  EngineConfig cfg;
  cfg.host_kv_cache = "1GiB";
  cfg.backend = "cuda";
  const int64_t cuda_bytes = host_kv_cache_bytes(cfg);
  cfg.backend = "cpu";
  EXPECT_EQ(host_kv_cache_bytes(cfg), cuda_bytes);
  EXPECT_EQ(cuda_bytes, int64_t(1) << 30);
}

TEST(EngineHostTierConfig, HitsTheReloadRuleDeclinesAreRecomputed) {
  // A model with no weights recomputes for free: the rule (HostReloadRule) never copies back.
  TierSetup off;
  TierSetup on = off;
  on.host_pages = 400;
  on.weight_bytes = 0;
  const ChatRun a = run_chat(off), b = run_chat(on);
  EXPECT_EQ(a.outputs, b.outputs);
  EXPECT_GT(b.stats.host.declined_tokens, 0);
  EXPECT_EQ(b.stats.host.reloaded_pages, 0);
  EXPECT_EQ(b.pages_to_device, 0);
  EXPECT_GT(b.stats.host.offloaded_pages, 0);
}

TEST(EngineHostTierConfig, TheMemoryPlanShowsTheHostPagesTheEngineMakes) {
  EngineConfig cfg;
  cfg.page_size = 4;
  cfg.max_num_seqs = 4;
  cfg.kv_cache_memory = "4096";
  cfg.host_kv_cache = "10000";  // 312.5 pages of 32 bytes
  fake::FakeModel model(kVocab, 4096);
  const MemoryPlan plan = plan_memory(cfg, model, 4096);
  EXPECT_EQ(plan.host_bytes, 10000);
  EXPECT_EQ(plan.host_pages, 312);
  EXPECT_EQ(plan.host_tokens, 312 * 4);
  EXPECT_EQ(plan.host_staging_bytes, 0);  // copies of plain memory need no staging (CUDA's: 64 MiB)
  Engine e(cfg, std::make_unique<fake::FakeModel>(kVocab, 4096),
           std::make_unique<fake::FakeCodec>());
  EXPECT_EQ(e.stats().host.capacity_pages, plan.host_pages);
  cfg.enable_prefix_cache = false;  // no prefix cache, no tier
  EXPECT_EQ(plan_memory(cfg, model, 4096).host_pages, 0);
}

}  // namespace test_engine_host_tier
}  // namespace nc

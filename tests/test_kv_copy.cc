// The host tier's copies on the CPU backend (Backend::copy_kv_pages) and the tier under a real
// model: K/V pages survive a round trip to host memory bit for bit (into other device pages,
// in one batch with offloads and restores interleaved), bad page ids are errors, and a tiny
// Llama (the golden fixture, real weights) gives the same greedy tokens in a multi-turn chat
// whose histories exceed its device pages with the tier on and off, the tier serving hits.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "backend/backend.h"
#include "core/error.h"
#include "engine/step_model.h"
#include "fake_model.h"
#include "nanocascade/engine.h"

namespace nc {
namespace {

// Layers of [pages, 2, page_size, heads, dim] float32 filled with distinct values.
std::vector<Tensor> random_layers(Backend& b, int layers, int pages, std::mt19937& rng) {
  std::vector<Tensor> out;
  for (int l = 0; l < layers; ++l) {
    Tensor t = b.alloc({pages, 2, 4, 2, 8}, DType::F32);
    float* p = t.ptr<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = float(rng() % 1000000) * 1e-3f;
    out.push_back(t);
  }
  return out;
}

std::vector<char> page_bytes(const std::vector<Tensor>& layers, int page) {
  std::vector<char> out;
  for (const Tensor& t : layers) {
    const size_t lb = t.nbytes() / size_t(t.shape()[0]);
    const char* p = static_cast<const char*>(t.data()) + size_t(page) * lb;
    out.insert(out.end(), p, p + lb);
  }
  return out;
}

TEST(KvCopy, PagesSurviveARoundTripThroughHostMemoryBitForBit) {
  std::unique_ptr<Backend> b = make_cpu_backend();
  std::mt19937 rng(1);
  std::vector<Tensor> layers = random_layers(*b, 3, 10, rng);
  const int64_t page = int64_t(layers[0].nbytes() / 10) * 3;
  std::unique_ptr<HostBuffer> host = b->alloc_host_buffer(6 * page);
  ASSERT_EQ(host->bytes(), 6 * page);
  const std::vector<char> p2 = page_bytes(layers, 2), p7 = page_bytes(layers, 7);
  // Offload pages 2 and 7, then overwrite the device pages.
  std::vector<KVPageCopy> out = {{2, 4, true}, {7, 0, true}};
  b->copy_kv_pages(layers, out, *host);
  for (Tensor& t : layers) std::memset(t.data(), 0xAB, t.nbytes() / 10 * 8);  // pages 0..7
  const std::vector<char> p8 = page_bytes(layers, 8);
  // One batch, run in order: host 0 back into device 7, then device 8 into host 0, then host 4
  // into device 1 (another page than it came from).
  std::vector<KVPageCopy> batch = {{7, 0, false}, {8, 0, true}, {1, 4, false}};
  b->copy_kv_pages(layers, batch, *host);
  b->sync_kv_copies();
  EXPECT_EQ(page_bytes(layers, 7), p7);  // host page 0 read before page 8 overwrote it
  EXPECT_EQ(page_bytes(layers, 1), p2);
  std::vector<KVPageCopy> back = {{3, 0, false}};
  b->copy_kv_pages(layers, back, *host);
  EXPECT_EQ(page_bytes(layers, 3), p8);
  std::vector<KVPageCopy> bad = {{10, 0, true}};
  EXPECT_THROW(b->copy_kv_pages(layers, bad, *host), Error);
  bad = {{0, 6, false}};
  EXPECT_THROW(b->copy_kv_pages(layers, bad, *host), Error);
}

std::string tiny_llama_dir() {
  for (const std::string& d : {std::string(NC_FIXTURES_DIR) + "/tiny-llama",
                               std::string(NC_FIXTURES_DIR) + "/loader/tiny-llama"}) {
    if (std::filesystem::exists(d + "/config.json")) return d;
  }
  return "";
}

std::vector<std::vector<int32_t>> tiny_chat(const std::string& dir, const std::string& host,
                                            EngineStats& stats) {
  EngineConfig cfg;
  cfg.page_size = 4;
  cfg.max_num_batched_tokens = 256;
  cfg.max_num_seqs = 3;
  cfg.kv_cache_memory = "60KiB";
  cfg.host_kv_cache = host;
  cfg.check_invariants = true;
  Engine e(cfg, make_llama_step_model(dir, "cpu"), std::make_unique<fake::FakeCodec>());
  std::mt19937 rng(4);
  std::vector<int32_t> system(18);
  for (int32_t& t : system) t = 3 + int32_t(rng() % 37);
  std::vector<std::vector<int32_t>> hist(6, system), got;
  for (int turn = 0; turn < 4; ++turn) {
    for (auto& h : hist)
      for (int k = 0; k < 5; ++k) h.push_back(3 + int32_t(rng() % 37));
    SamplingParams p;
    p.temperature = 0;
    p.max_tokens = 6;
    p.ignore_eos = true;
    const std::vector<CompletionOutput> outs = e.generate(hist, p);
    for (size_t i = 0; i < outs.size(); ++i) {
      got.push_back(outs[i].token_ids);
      hist[i].insert(hist[i].end(), outs[i].token_ids.begin(), outs[i].token_ids.end());
    }
  }
  stats = e.stats();
  return got;
}

TEST(KvCopy, RealModelGivesTheSameGreedyTokensWithTheTierOnAndOff) {
  const std::string dir = tiny_llama_dir();
  if (dir.empty()) GTEST_SKIP() << "no tiny-llama fixture";
  EngineStats off, on;
  const auto a = tiny_chat(dir, "", off);
  const auto b = tiny_chat(dir, "1MiB", on);
  EXPECT_EQ(a, b);
  EXPECT_GT(off.cache.pages_evicted, 0) << "the histories should not fit the device pages";
  EXPECT_GT(on.host.reloaded_pages, 0);
  EXPECT_GT(on.host.hit_tokens, 0);
  EXPECT_LT(on.num_prompt_tokens_computed, off.num_prompt_tokens_computed);
}

}  // namespace
}  // namespace nc

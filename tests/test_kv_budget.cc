// KV-cache sizing (engine/kv_budget.h) and the lazily zeroed host memory that lets a large KV
// pool cost resident memory only for the pages in use (issue #19).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "core/error.h"
#include "core/tensor.h"
#include "engine/kv_budget.h"
#include "fake_model.h"
#include "nanocascade/engine.h"

namespace nc {
namespace {

constexpr int64_t kMiB = int64_t(1) << 20;
constexpr int64_t kGiB = int64_t(1) << 30;

KvBudgetInputs cpu_inputs() {
  KvBudgetInputs in;
  in.physical_memory_bytes = 64 * kGiB;
  in.bytes_per_page = kMiB;
  in.page_size = 16;
  in.max_num_seqs = 256;
  in.max_model_len = 8192;
  return in;
}

TEST(KvBudget, CpuDefaultIsTwoGiBOrAQuarterOfRam) {
  KvBudgetInputs in = cpu_inputs();
  EXPECT_EQ(kv_budget_bytes(in), 2 * kGiB);
  EXPECT_EQ(kv_cache_pages(in), 2048);
  in.physical_memory_bytes = 4 * kGiB;  // a quarter of RAM is less than 2 GiB
  EXPECT_EQ(kv_budget_bytes(in), kGiB);
  EXPECT_EQ(kv_cache_pages(in), 1024);
}

TEST(KvBudget, CappedAtWhatMaxNumSeqsFullLengthRequestsUse) {
  KvBudgetInputs in = cpu_inputs();
  in.max_num_seqs = 4;
  in.max_model_len = 1000;  // 63 pages of 16 tokens each
  EXPECT_EQ(kv_useful_pages(4, 1000, 16), 252);
  EXPECT_EQ(kv_cache_pages(in), 252);
  in.kv_cache_memory = "8GiB";  // an explicit budget is capped the same way
  EXPECT_EQ(kv_cache_pages(in), 252);
  EXPECT_EQ(kv_useful_pages(1, 0, 16), 1);  // never 0
}

TEST(KvBudget, ExplicitBudgetReplacesTheDefault) {
  KvBudgetInputs in = cpu_inputs();
  in.kv_cache_memory = "3GiB";  // more than the 2 GiB default
  EXPECT_EQ(kv_cache_pages(in), 3072);
  in.kv_cache_memory = "512MiB";
  EXPECT_EQ(kv_cache_pages(in), 512);
  in.kv_cache_memory = "0.5";  // of the free memory
  in.free_memory_bytes = 2 * kGiB;
  EXPECT_EQ(kv_cache_pages(in), 1024);
}

TEST(KvBudget, CudaDefaultIsNinetyPercentOfFreeMemory) {
  KvBudgetInputs in = cpu_inputs();
  in.cuda = true;
  in.free_memory_bytes = 10 * kGiB;
  EXPECT_EQ(kv_budget_bytes(in), int64_t(0.9 * 10 * kGiB));
}

TEST(KvBudget, FreeMemoryAskedForOnlyWhenNeeded) {
  EXPECT_TRUE(kv_budget_needs_free_memory(""));
  EXPECT_TRUE(kv_budget_needs_free_memory("0.9"));
  EXPECT_FALSE(kv_budget_needs_free_memory("2GiB"));
  EXPECT_THROW(kv_budget_needs_free_memory("lots"), Error);
}

TEST(KvBudget, BudgetBelowOnePageNamesTheBudget) {
  KvBudgetInputs in = cpu_inputs();
  in.kv_cache_memory = "1000";
  try {
    kv_cache_pages(in);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1000 bytes"), std::string::npos) << e.what();
  }
}

TEST(KvBudget, EngineAllocatesThePagesMaxNumSeqsCanUse) {
  EngineConfig cfg;  // the default (CPU) budget
  cfg.page_size = 16;
  cfg.max_num_seqs = 3;
  cfg.max_model_len = 100;  // 7 pages per request
  Engine engine(cfg, std::make_unique<fake::FakeModel>(300, 4096),
                std::make_unique<fake::FakeCodec>());
  EXPECT_EQ(engine.stats().total_pages, 21);
}

int64_t resident_bytes() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  const int n = std::fscanf(f, "%ld %ld", &pages, &resident);
  std::fclose(f);
  return n == 2 ? int64_t(resident) * sysconf(_SC_PAGESIZE) : -1;
}

TEST(HostTensor, LargeTensorsAreZeroAndResidentOnlyWhereWritten) {
  const int64_t before = resident_bytes();
  if (before < 0) GTEST_SKIP() << "no /proc/self/statm";
  Tensor t = Tensor::empty_host({int64_t(256) * kMiB / 4}, DType::F32);  // 256 MiB
  const int64_t after = resident_bytes();
  EXPECT_LT(after - before, 64 * kMiB) << "the allocation was touched";
  float* p = t.ptr<float>();
  EXPECT_EQ(p[0], 0.0f);
  EXPECT_EQ(p[t.numel() / 2], 0.0f);
  EXPECT_EQ(p[t.numel() - 1], 0.0f);
  p[t.numel() - 1] = 1.0f;
  EXPECT_EQ(p[t.numel() - 1], 1.0f);
  Tensor small = Tensor::empty_host({1000}, DType::F32);
  EXPECT_EQ(small.ptr<float>()[999], 0.0f);
}

}  // namespace
}  // namespace nc

// The thread pool the CPU kernels run on: every index is covered exactly once by the fixed
// partition, back-to-back calls (workers still spinning) and calls after the workers went to
// sleep both complete, and destroying a pool with sleeping workers returns.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/thread_pool.h"

namespace nc {
namespace {

// Runs one parallel_for over n and checks each index was visited once, in the chunk the static
// partition gives.
void check_cover(ThreadPool& pool, int64_t n) {
  std::vector<std::atomic<int>> hits(size_t(n > 0 ? n : 0));
  std::vector<std::pair<int64_t, int64_t>> chunks;
  std::mutex mu;
  pool.parallel_for(n, [&](int64_t b, int64_t e) {
    ASSERT_LT(b, e);
    for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
    std::lock_guard<std::mutex> lock(mu);
    chunks.emplace_back(b, e);
  });
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "n=" << n << " i=" << i;
  const int parts = n == 1 ? 1 : pool.size();
  for (auto [b, e] : chunks) {
    bool matches = false;
    for (int p = 0; p < parts; ++p) matches |= b == n * p / parts && e == n * (p + 1) / parts;
    EXPECT_TRUE(matches) << "chunk [" << b << ", " << e << ") of n=" << n;
  }
}

TEST(CpuQuantThreads, CoversEveryIndexOnceWithTheStaticPartition) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 3, 7, 100, 1001}) check_cover(pool, n);
  }
}

TEST(CpuQuantThreads, BackToBackAndAfterSleepCallsComplete) {
  ThreadPool pool(2);
  int64_t total = 0;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 300; ++i) {  // workers still spinning between calls
      std::atomic<int64_t> sum{0};
      pool.parallel_for(64, [&](int64_t b, int64_t e) { sum += e - b; });
      total += sum.load();
    }
    // Longer than the spin: the workers sleep on the condition variable and must be woken.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(total, 3 * 300 * 64);
}

TEST(CpuQuantThreads, DestroysWithSleepingWorkers) {
  auto pool = std::make_unique<ThreadPool>(3);
  check_cover(*pool, 10);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  pool.reset();  // must not hang
  SUCCEED();
}

}  // namespace
}  // namespace nc

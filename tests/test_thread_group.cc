// Tensor parallelism's CPU communicator (dist/thread_group.h) against its contract
// (dist/communicator.h): sums in rank order with the same bits on every rank, gathers in rank
// order, broadcasts, and stops the whole group with an error naming the rank (never a hang)
// when a rank fails, never arrives, or brings a tensor of another size.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <random>
#include <thread>

#include "comm_test_util.h"
#include "core/error.h"
#include "dist/thread_group.h"

namespace nc {
namespace {

using std::chrono::milliseconds;
using testing::host_f32;
using testing::rank_inputs;
using testing::rank_order_sum;
using testing::values;

// Runs body(rank, comm) on `size` threads; returns each rank's error message ("" if none).
std::vector<std::string> run_ranks(const std::shared_ptr<ThreadGroup>& group,
                                   const std::function<void(int, Communicator&)>& body) {
  std::vector<std::string> errors(size_t(group->size()));
  std::vector<std::thread> threads;
  for (int r = 0; r < group->size(); ++r)
    threads.emplace_back([&, r] {
      auto comm = group->communicator(r);
      try {
        body(r, *comm);
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
      }
    });
  for (std::thread& t : threads) t.join();
  return errors;
}

TEST(ThreadGroup, AllReduceSumsInRankOrderWithTheSameBitsEverywhere) {
  for (int size : {1, 2, 3, 4}) {
    const int64_t n = 1000;
    const auto inputs = rank_inputs(size, n);
    const std::vector<float> want = rank_order_sum(inputs);
    std::vector<std::vector<float>> got(static_cast<size_t>(size));
    auto group = ThreadGroup::make(size, milliseconds(10000));
    const auto errors = run_ranks(group, [&](int r, Communicator& c) {
      EXPECT_EQ(c.rank(), r);
      EXPECT_EQ(c.size(), size);
      for (int round = 0; round < 3; ++round) {  // repeated collectives reuse the slots
        Tensor t = host_f32(inputs[size_t(r)], {n / 10, 10});
        c.all_reduce_sum(t);
        got[size_t(r)] = values(t);
      }
    });
    for (int r = 0; r < size; ++r) {
      EXPECT_EQ(errors[size_t(r)], "");
      EXPECT_EQ(got[size_t(r)], want) << "size " << size << " rank " << r;  // bit for bit
    }
  }
}

TEST(ThreadGroup, AllGatherConcatenatesColumnsInRankOrderAndBroadcastCopiesTheRoot) {
  const int size = 3;
  auto group = ThreadGroup::make(size, milliseconds(10000));
  std::vector<std::vector<float>> gathered(size);
  std::vector<std::string> received(size);
  const auto errors = run_ranks(group, [&](int r, Communicator& c) {
    Tensor x =
        host_f32({float(10 * r), float(10 * r + 1), float(10 * r + 2), float(10 * r + 3)}, {2, 2});
    Tensor out = Tensor::empty_host({2, 6}, DType::F32);
    c.all_gather(x, out);
    gathered[size_t(r)] = values(out);
    std::string msg = r == 1 ? "plan of step 7" : "stale";
    std::vector<std::byte> bytes(msg.size());
    std::memcpy(bytes.data(), msg.data(), msg.size());
    c.broadcast(bytes, 1);
    received[size_t(r)] = std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  });
  for (int r = 0; r < size; ++r) {
    EXPECT_EQ(errors[size_t(r)], "");
    EXPECT_EQ(gathered[size_t(r)],
              (std::vector<float>{0, 1, 10, 11, 20, 21, 2, 3, 12, 13, 22, 23}));
    EXPECT_EQ(received[size_t(r)], "plan of step 7");
  }
}

TEST(ThreadGroup, ARankThatNeverArrivesStopsTheGroupWithinTheTimeout) {
  auto group = ThreadGroup::make(3, milliseconds(300));
  const auto start = std::chrono::steady_clock::now();
  const auto errors = run_ranks(group, [&](int r, Communicator& c) {
    Tensor t = host_f32({1.0f, 2.0f}, {2});
    c.all_reduce_sum(t);
    if (r == 2) return;  // "killed": never reaches the second collective
    c.all_reduce_sum(t);
  });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 5.0);  // bounded by the timeout, not a hang
  EXPECT_EQ(errors[2], "");
  for (int r : {0, 1}) {
    EXPECT_NE(errors[size_t(r)].find("all_reduce_sum"), std::string::npos) << errors[size_t(r)];
    EXPECT_NE(errors[size_t(r)].find("rank(s) 2"), std::string::npos) << errors[size_t(r)];
  }
  EXPECT_NE(group->failure().find("rank(s) 2"), std::string::npos);
}

TEST(ThreadGroup, AnAbortedRankStopsTheOthersAtOnce) {
  auto group = ThreadGroup::make(4, milliseconds(60000));
  const auto start = std::chrono::steady_clock::now();
  const auto errors = run_ranks(group, [&](int r, Communicator& c) {
    if (r == 3) return c.abort("out of memory in layer 5");
    Tensor t = host_f32({1.0f}, {1});
    c.all_reduce_sum(t);
  });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 10.0);  // far below the minute's timeout
  for (int r : {0, 1, 2})
    EXPECT_NE(errors[size_t(r)].find("rank 3 failed: out of memory in layer 5"), std::string::npos)
        << errors[size_t(r)];
  // A stopped group refuses new collectives too.
  auto late = group->communicator(0);
  Tensor t = host_f32({1.0f}, {1});
  EXPECT_THROW(late->all_reduce_sum(t), Error);
}

TEST(ThreadGroup, MismatchedSizesAreAnErrorOnEveryRank) {
  auto group = ThreadGroup::make(2, milliseconds(10000));
  const auto errors = run_ranks(group, [&](int r, Communicator& c) {
    Tensor t = host_f32(std::vector<float>(size_t(3 + r), 1.0f), {3 + r});
    c.all_reduce_sum(t);
  });
  for (const std::string& e : errors)
    EXPECT_NE(e.find("rank 0 has 12 bytes, rank 1 has 16"), std::string::npos) << e;
}

TEST(ThreadGroup, DifferentCollectivesAreAnErrorOnEveryRank) {
  auto group = ThreadGroup::make(2, milliseconds(10000));
  const auto errors = run_ranks(group, [&](int r, Communicator& c) {
    Tensor t = host_f32({1, 2, 3, 4}, {2, 2});
    if (r == 0) return c.all_reduce_sum(t);
    Tensor out = Tensor::empty_host({2, 4}, DType::F32);
    c.all_gather(t, out);
  });
  for (const std::string& e : errors)
    EXPECT_NE(e.find("rank 0 called all_reduce_sum where rank 1 called all_gather"),
              std::string::npos)
        << e;
}

TEST(ThreadGroup, BadArgumentsAreRefusedByName) {
  EXPECT_THROW(ThreadGroup::make(0, milliseconds(10)), Error);
  EXPECT_THROW(ThreadGroup::make(2, milliseconds(0)), Error);
  auto group = ThreadGroup::make(2, milliseconds(10));
  EXPECT_THROW(group->communicator(2), Error);
}

}  // namespace
}  // namespace nc

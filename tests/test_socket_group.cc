// Tensor parallelism's communicator between processes (dist/socket_group.h over
// dist/tcp_link.h), its ranks run here as threads over localhost TCP: the same results as the
// thread group (sums in rank order, same bits on every rank; gathers in rank order; broadcasts
// from any root), and faults that stop the group with an error naming the rank within a bounded
// time: an abort with its reason, a rank whose connection closes (its process died), a rank that
// never comes, a second process claiming a rank or another group size; during the set-up, a rank
// that cannot join (it reports why) and a rank process that dies (its watcher reports it).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <functional>
#include <random>
#include <thread>

#include "comm_test_util.h"
#include "core/error.h"
#include "dist/rank_watch.h"
#include "dist/socket_group.h"

namespace nc {
namespace {

using std::chrono::milliseconds;
using testing::host_f32;
using testing::rank_inputs;
using testing::rank_order_sum;
using testing::values;

// Runs body(rank, comm) for `size` ranks, each a thread with its own TCP connection; returns
// each rank's error ("" if none) and how long the slowest took.
struct Outcome {
  std::vector<std::string> errors;
  double seconds = 0;
};
Outcome run_ranks(int size, milliseconds timeout,
                  const std::function<void(int, Communicator&)>& body) {
  auto listener = std::make_unique<TcpListener>(HostPort{"127.0.0.1", 0});
  const HostPort at{"127.0.0.1", listener->port()};
  Outcome out;
  out.errors.resize(static_cast<size_t>(size));
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  // Rank 0's end stays open until every rank is done, as a live rank 0 process's does (the
  // others close theirs when their thread ends, as a process that exits does).
  std::unique_ptr<Communicator> root;
  for (int r = 0; r < size; ++r)
    threads.emplace_back([&, r] {
      std::unique_ptr<Communicator> mine;
      try {
        std::unique_ptr<Communicator>& comm = r == 0 ? root : mine;
        comm = r == 0 ? make_socket_root(std::move(listener), size, milliseconds(10000), timeout)
                      : make_socket_peer(at, r, size, milliseconds(10000), timeout);
        body(r, *comm);
      } catch (const std::exception& e) {
        out.errors[size_t(r)] = e.what();
      }
    });
  for (std::thread& t : threads) t.join();
  root.reset();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

TEST(SocketGroup, AllReduceSumsInRankOrderWithTheSameBitsEverywhere) {
  for (int size : {1, 2, 4}) {
    const int64_t n = 5000;
    const auto inputs = rank_inputs(size, n);
    const std::vector<float> want = rank_order_sum(inputs);
    std::vector<std::vector<float>> got(static_cast<size_t>(size));
    const Outcome o = run_ranks(size, milliseconds(10000), [&](int r, Communicator& c) {
      Tensor t = host_f32(inputs[size_t(r)], {n});
      c.all_reduce_sum(t);
      got[size_t(r)] = values(t);
    });
    for (int r = 0; r < size; ++r) {
      EXPECT_EQ(o.errors[size_t(r)], "");
      ASSERT_EQ(got[size_t(r)].size(), want.size());
      EXPECT_EQ(std::memcmp(got[size_t(r)].data(), want.data(), want.size() * sizeof(float)), 0)
          << "size " << size << " rank " << r;
    }
  }
}

TEST(SocketGroup, AllGatherPlacesEachRanksColumnsInRankOrder) {
  const int size = 3;
  std::vector<std::vector<float>> got(size);
  const Outcome o = run_ranks(size, milliseconds(10000), [&](int r, Communicator& c) {
    // Rank r's [2, 2] block: 100 r + 10 row + column.
    const float b = 100.0f * float(r);
    Tensor x = host_f32({b, b + 1, b + 10, b + 11}, {2, 2});
    Tensor out = Tensor::empty_host({2, 6}, DType::F32);
    c.all_gather(x, out);
    got[size_t(r)] = values(out);
  });
  const std::vector<float> want{0, 1, 100, 101, 200, 201, 10, 11, 110, 111, 210, 211};
  for (int r = 0; r < size; ++r) {
    EXPECT_EQ(o.errors[size_t(r)], "");
    EXPECT_EQ(got[size_t(r)], want) << "rank " << r;
  }
}

TEST(SocketGroup, BroadcastsFromAnyRootAndWaitsUnboundedWhenAsked) {
  const int size = 3;
  std::vector<std::vector<std::byte>> got(size);
  const Outcome o = run_ranks(size, milliseconds(300), [&](int r, Communicator& c) {
    for (int root : {0, 2}) {
      std::vector<std::byte> bytes;
      if (r == root) bytes.assign(size_t(1000 + root), std::byte(root + 1));
      c.broadcast(bytes, root);
      EXPECT_EQ(bytes, std::vector<std::byte>(size_t(1000 + root), std::byte(root + 1)))
          << "rank " << r << " root " << root;
    }
    // Rank 0 sends after three timeouts: a rank waiting unbounded still gets the bytes.
    if (r == 0) std::this_thread::sleep_for(milliseconds(900));
    std::vector<std::byte> late{std::byte(7)};
    if (r != 0) late.clear();
    c.broadcast(late, 0, Communicator::Wait::Unbounded);
    got[size_t(r)] = late;
  });
  for (int r = 0; r < size; ++r) {
    EXPECT_EQ(o.errors[size_t(r)], "") << "rank " << r;
    EXPECT_EQ(got[size_t(r)], std::vector<std::byte>{std::byte(7)}) << "rank " << r;
  }
}

TEST(SocketGroup, AnAbortStopsEveryRankWithItsReason) {
  const Outcome o = run_ranks(3, milliseconds(5000), [&](int r, Communicator& c) {
    if (r == 2) c.abort("out of memory on rank 2");
    Tensor t = host_f32({1, 2}, {2});
    c.all_reduce_sum(t);
    c.all_reduce_sum(t);  // every rank stops at the first, never the second
  });
  for (int r = 0; r < 3; ++r) {
    EXPECT_NE(o.errors[size_t(r)].find("out of memory on rank 2"), std::string::npos)
        << "rank " << r << ": " << o.errors[size_t(r)];
  }
  EXPECT_LT(o.seconds, 4.0);  // well within the timeout: nobody waited for rank 2
}

TEST(SocketGroup, ARankWhoseConnectionClosesStopsTheOthersAtOnce) {
  // A process that dies closes its sockets: rank 1 leaves without a word (its communicator
  // destroyed), and ranks 0 and 2 stop at their next collective naming it.
  const Outcome o = run_ranks(3, milliseconds(20000), [&](int r, Communicator& c) {
    if (r == 1) return;
    Tensor t = host_f32({1}, {1});
    c.all_reduce_sum(t);
  });
  EXPECT_NE(o.errors[0].find("rank 1 closed the connection"), std::string::npos) << o.errors[0];
  EXPECT_NE(o.errors[2].find("rank 1"), std::string::npos) << o.errors[2];
  EXPECT_LT(o.seconds, 10.0);
}

TEST(SocketGroup, ARankThatNeverComesTimesOutNamingWhatWasAwaited) {
  const Outcome o = run_ranks(2, milliseconds(400), [&](int r, Communicator& c) {
    if (r == 1) {
      std::this_thread::sleep_for(milliseconds(1500));
      return;
    }
    Tensor t = host_f32({1}, {1});
    c.all_reduce_sum(t);
  });
  EXPECT_NE(o.errors[0].find("timed out in all_reduce_sum with rank 1"), std::string::npos)
      << o.errors[0];
}

TEST(SocketGroup, SetUpRefusesADuplicateRankOrAnotherGroupSize) {
  auto listener = std::make_unique<TcpListener>(HostPort{"127.0.0.1", 0});
  const HostPort at{"127.0.0.1", listener->port()};
  std::string root_error, peer_error;
  std::thread root([&] {
    try {
      make_socket_root(std::move(listener), 3, milliseconds(5000), milliseconds(5000));
    } catch (const Error& e) {
      root_error = e.what();
    }
  });
  try {
    make_socket_peer(at, 1, 4, milliseconds(5000), milliseconds(5000));  // started for 4
  } catch (const Error& e) {
    peer_error = e.what();
  }
  root.join();
  EXPECT_NE(root_error.find("started for a group of 4, rank 0 for 3"), std::string::npos)
      << root_error;
  EXPECT_NE(peer_error.find("group of 4"), std::string::npos) << peer_error;
}

TEST(SocketGroup, AddressesAreCheckedAndAnAbsentRootIsReportedInTime) {
  EXPECT_EQ(parse_host_port("10.1.2.3:29500").host, "10.1.2.3");
  EXPECT_EQ(parse_host_port("node-a:80").port, 80);
  for (const char* bad : {"", "29500", ":29500", "host:", "host:0", "host:70000", "host:12x"}) {
    try {
      parse_host_port(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
  // Nobody listens on a port just freed: the peer retries, then names the address.
  int port = 0;
  {
    TcpListener l(HostPort{"127.0.0.1", 0});
    port = l.port();
  }
  const auto start = std::chrono::steady_clock::now();
  try {
    make_socket_peer({"127.0.0.1", port}, 1, 2, milliseconds(300), milliseconds(300));
    FAIL() << "joined a group nobody listens for";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fmt::format("127.0.0.1:{}", port)), std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
}

// Rank 0's set-up for a group of `size` with a long join time: its error (or "" once formed)
// and the seconds it took, while `others` runs on this thread.
struct JoinOutcome {
  std::string error;
  double seconds = 0;
};
JoinOutcome set_up_while(int size, const std::function<void(const HostPort&)>& others) {
  auto listener = std::make_unique<TcpListener>(HostPort{"127.0.0.1", 0});
  const HostPort at{"127.0.0.1", listener->port()};
  JoinOutcome out;
  const auto start = std::chrono::steady_clock::now();
  std::thread root([&] {
    try {
      make_socket_root(std::move(listener), size, milliseconds(60000), milliseconds(5000));
    } catch (const Error& e) {
      out.error = e.what();
    }
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  });
  others(at);
  root.join();
  return out;
}

TEST(SocketGroup, ARankThatCannotJoinStopsTheSetUpAtOnceWithItsReason) {
  std::string joined_error;
  const JoinOutcome s = set_up_while(3, [&](const HostPort& at) {
    std::thread joined([&] {  // rank 1 joined first: it hears why the group will not form
      try {
        make_socket_peer(at, 1, 3, milliseconds(60000), milliseconds(5000));
      } catch (const Error& e) {
        joined_error = e.what();
      }
    });
    std::this_thread::sleep_for(milliseconds(200));
    report_join_failure(at, 2, "cannot open shard model-00002.safetensors", milliseconds(5000));
    joined.join();
  });
  EXPECT_NE(s.error.find("rank 2 could not join: cannot open shard model-00002.safetensors"),
            std::string::npos)
      << s.error;
  EXPECT_LT(s.seconds, 10.0);  // not the 60 s join time
  EXPECT_NE(joined_error.find("rank 2 could not join"), std::string::npos) << joined_error;
}

TEST(SocketGroup, AWatchedRankProcessThatDiesIsReportedAndOneThatExitsCleanlyIsNot) {
  // Rank 1's process exits with status 0 (not a failure), rank 2's is killed before joining.
  const pid_t clean = ::fork();
  if (clean == 0) ::_exit(0);
  const pid_t killed = ::fork();
  if (killed == 0) ::raise(SIGKILL);
  ASSERT_GT(clean, 0);
  ASSERT_GT(killed, 0);
  const JoinOutcome s = set_up_while(3, [&](const HostPort& at) {
    const RankProcessWatch watch(at, {{clean, 1}, {killed, 2}});
    std::this_thread::sleep_for(milliseconds(1000));  // its report arrives meanwhile
  });
  EXPECT_NE(s.error.find(fmt::format("rank 2 could not join: its process (pid {}) was killed by "
                                     "signal {}",
                                     killed, SIGKILL)),
            std::string::npos)
      << s.error;
  EXPECT_EQ(s.error.find("rank 1"), std::string::npos) << s.error;
  EXPECT_LT(s.seconds, 10.0);
  // The watch did not reap them: their owner still can.
  int status = 0;
  EXPECT_EQ(::waitpid(clean, &status, 0), clean);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(::waitpid(killed, &status, 0), killed);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

// A rank process that dies before rank 0 listens (rank 0 loads its own shard first) is still
// reported: the watch offers the report until rank 0's listener takes it.
TEST(SocketGroup, ARankProcessThatDiesBeforeRankZeroListensIsStillReported) {
  const pid_t killed = ::fork();
  if (killed == 0) ::raise(SIGKILL);
  ASSERT_GT(killed, 0);
  const HostPort at = parse_host_port(free_local_address());
  const RankProcessWatch watch(at, {{killed, 1}});
  std::this_thread::sleep_for(milliseconds(1500));  // rank 0 "loading": nobody listens yet
  std::string error;
  const auto start = std::chrono::steady_clock::now();
  try {
    make_socket_root(std::make_unique<TcpListener>(at), 2, milliseconds(60000), milliseconds(5000));
  } catch (const Error& e) {
    error = e.what();
  }
  EXPECT_NE(error.find("rank 1 could not join"), std::string::npos) << error;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0);
  int status = 0;
  EXPECT_EQ(::waitpid(killed, &status, 0), killed);
}

}  // namespace
}  // namespace nc

// Tensor parallelism on the CPU backend: the ranks of a group are threads of one process and
// their collectives meet in shared memory (dist/communicator.h gives the contract). CI has no
// GPU, so this is how the sharded model is tested there; it is also the reference the NCCL
// communicator is checked against.
//
//   auto group = ThreadGroup::make(4, std::chrono::seconds(30));
//   // in rank r's thread:
//   std::unique_ptr<Communicator> comm = group->communicator(r);
//   comm->all_reduce_sum(t);  // t: a float32 tensor in host memory (the CPU backend's)
//
// Every collective is a rendezvous: a rank publishes its buffer and waits until all have, each
// then reads every rank's buffer (so the sum is computed in rank order by each rank alike), and
// a second rendezvous keeps the buffers alive until everyone has read them. A rank that waits
// longer than the timeout stops the group, naming the ranks that did not come.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dist/communicator.h"

namespace nc {

class ThreadGroup : public std::enable_shared_from_this<ThreadGroup> {
 public:
  // size >= 1; timeout > 0: the longest one rank waits for the others in a collective.
  static std::shared_ptr<ThreadGroup> make(int size, std::chrono::milliseconds timeout);
  // Rank r's end of the group (0 <= r < size); each rank takes its own, once.
  std::unique_ptr<Communicator> communicator(int rank);
  int size() const { return size_; }
  // Whether the group has stopped, and why (empty while it runs).
  std::string failure();

  // What the communicators use (not for callers).
  struct Published {
    const void* data = nullptr;
    int64_t bytes = 0;
    const char* what = "";  // the collective, checked to be the same on every rank
  };
  // Publishes rank's buffer for collective `what` and waits for every rank's; returns them in
  // rank order. Throws (and stops the group) on a timeout (none when `unbounded`), a failed group
  // or a size mismatch when `same_bytes`.
  std::vector<Published> meet(int rank, const char* what, Published mine, bool same_bytes,
                              bool unbounded = false);
  // Waits until every rank has passed the same point (after reading the others' buffers).
  void release(int rank, const char* what);
  void fail(int rank, const std::string& why);

 private:
  ThreadGroup(int size, std::chrono::milliseconds timeout);
  void wait_all(std::unique_lock<std::mutex>& lock, int rank, const char* what, bool unbounded);

  const int size_;
  const std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Published> slots_;
  std::vector<uint64_t> arrivals_;  // per rank: how many rendezvous it has entered
  uint64_t completed_ = 0;          // rendezvous every rank has entered
  std::string failure_;
};

}  // namespace nc

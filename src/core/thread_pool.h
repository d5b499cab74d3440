// A small persistent thread pool for the CPU backend: parallel_for over an index range, with a
// static partition so that results never depend on timing.
//
// Dispatch latency matters (a decode step runs a few hundred parallel_for calls of tens of
// microseconds each), so an idle worker first spins on the job counter for a short while
// (kSpin) before it sleeps on a condition variable, and the caller spins likewise while it waits
// for the last chunk. Which chunk a thread runs is fixed by its index, never by who comes first.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace nc {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }
  // Calls fn(begin, end) on disjoint chunks covering [0, n); the caller's thread takes part.
  // Not re-entrant: fn must not call parallel_for on the same pool.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

  // The process-wide pool (size from NC_NUM_THREADS or the hardware).
  static ThreadPool& global();

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  // Written by the caller before it publishes a new generation (release), read by workers after
  // they see it (acquire).
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace nc

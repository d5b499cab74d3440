// A small persistent thread pool for the CPU backend: parallel_for over an index range, cut into a
// fixed partition so that results never depend on timing.
//
// Dispatch latency matters (a decode step runs a few hundred parallel_for calls of tens of
// microseconds each), so an idle worker first spins on the job ticket for a short while (kSpin)
// before it sleeps on a condition variable, and the caller spins likewise while it waits for the
// last chunk. The chunks' bounds are fixed by n and the pool size; which thread runs a chunk is
// not: each thread, the caller included, claims the next unclaimed chunk until none is left. On a
// loaded machine a worker that is not running when a job starts then costs nothing (the caller
// takes its chunks) instead of a scheduler time slice per call.
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
  // Not re-entrant: fn must not call parallel_for on the same pool. Calls from several threads
  // at once (tensor-parallel ranks as threads, dist/thread_group.h) take turns: one job runs on
  // the pool at a time.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

  // The process-wide pool (size from NC_NUM_THREADS or the hardware).
  static ThreadPool& global();

 private:
  void worker_loop();
  // Claims and runs chunks of the job of generation `gen` until none is left (or a later job
  // was published).
  void run_chunks(uint64_t gen);

  std::vector<std::thread> workers_;
  std::mutex callers_;  // held by the caller whose job the pool runs
  std::mutex mu_;
  std::condition_variable wake_, done_;
  // Written by the caller before it publishes a new ticket (release), read by a thread after its
  // claim on that ticket succeeded (acquire): the job cannot change before every chunk is done.
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  // The job's generation (high 32 bits) and its next unclaimed chunk (low 32 bits).
  std::atomic<uint64_t> ticket_{0};
  std::atomic<int> remaining_{0};  // chunks of the current job not yet finished
  std::atomic<bool> stop_{false};
};

}  // namespace nc

#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

namespace nc {
namespace {

// How long a waiting thread polls before it sleeps: longer than the gap between two matmuls of a
// decode step, much shorter than the gap between steps.
constexpr auto kSpin = std::chrono::microseconds(200);

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// Polls `ready` for up to kSpin; true when it became true. After the first few hundred polls it
// yields between polls: on a machine with more runnable threads than cores, the thread it waits
// for may need this core.
template <typename Ready>
bool spin_until(Ready ready) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (ready()) return true;
    if (i < 512)
      cpu_relax();
    else
      std::this_thread::yield();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) return false;
  }
}

constexpr uint64_t kIndexMask = 0xFFFFFFFFu;

uint64_t generation_of(uint64_t ticket) {
  return ticket >> 32;
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  for (int i = 1; i < std::max(1, num_threads); ++i)
    workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks(uint64_t gen) {
  uint64_t t = ticket_.load(std::memory_order_acquire);
  for (;;) {
    if (generation_of(t) != gen || int64_t(t & kIndexMask) >= size()) return;
    // A failed exchange reloads t; a successful one owns chunk t's index of this generation.
    if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel,
                                       std::memory_order_acquire))
      continue;
    const int64_t index = int64_t(t & kIndexMask), n = job_n_;
    const int64_t begin = n * index / size(), end = n * (index + 1) / size();
    if (begin < end) (*job_)(begin, end);
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);  // pairs with the caller's check under the lock
      done_.notify_one();
    }
    t = ticket_.load(std::memory_order_acquire);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> one_job(callers_);
  job_ = &fn;
  job_n_ = n;
  remaining_.store(size(), std::memory_order_relaxed);
  const uint64_t gen = generation_of(ticket_.load(std::memory_order_relaxed)) + 1;
  {
    // Under the lock, so that a worker that checked the ticket and is about to sleep cannot miss
    // the wake-up.
    std::lock_guard<std::mutex> lock(mu_);
    ticket_.store(gen << 32, std::memory_order_release);
  }
  wake_.notify_all();
  run_chunks(gen);
  auto all_done = [this] { return remaining_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(all_done)) {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, all_done);
  }
  job_ = nullptr;
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    auto has_work = [&] {
      return stop_.load(std::memory_order_relaxed) ||
             generation_of(ticket_.load(std::memory_order_acquire)) != seen;
    };
    if (!spin_until(has_work)) {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, has_work);
    }
    if (stop_.load()) return;
    seen = generation_of(ticket_.load(std::memory_order_acquire));
    run_chunks(seen);
  }
}

ThreadPool& ThreadPool::global() {
  static ThreadPool pool([] {
    if (const char* env = std::getenv("NC_NUM_THREADS")) return std::max(1, std::atoi(env));
    return int(std::max(1u, std::thread::hardware_concurrency()));
  }());
  return pool;
}

}  // namespace nc

// Tensor parallelism's CPU communicator (dist/thread_group.h).
#include "dist/thread_group.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace nc {
namespace {

// The ranks below `needed` arrivals, as "1, 3".
std::string missing_ranks(const std::vector<uint64_t>& arrivals, uint64_t needed) {
  std::string out;
  for (size_t r = 0; r < arrivals.size(); ++r)
    if (arrivals[r] < needed) out += (out.empty() ? "" : ", ") + std::to_string(r);
  return out;
}

void expect_host_contiguous(const Tensor& t, const char* what) {
  NC_CHECK(t.defined() && t.device() == Device::CPU && t.is_contiguous(),
           "tensor parallel {}: the CPU communicator takes contiguous host tensors", what);
}

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<ThreadGroup> group, int rank)
      : group_(std::move(group)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }

  void all_reduce_sum(Tensor x) override {
    expect_host_contiguous(x, "all_reduce_sum");
    NC_CHECK(x.dtype() == DType::F32, "tensor parallel all_reduce_sum: dtype {} (float32 only)",
             dtype_name(x.dtype()));
    const auto parts =
        group_->meet(rank_, "all_reduce_sum", {x.data(), int64_t(x.nbytes())}, /*same_bytes=*/true);
    const size_t n = size_t(x.numel());
    std::vector<float> sum(static_cast<const float*>(parts[0].data),
                           static_cast<const float*>(parts[0].data) + n);
    for (size_t r = 1; r < parts.size(); ++r) {
      const float* p = static_cast<const float*>(parts[r].data);
      for (size_t i = 0; i < n; ++i) sum[i] += p[i];
    }
    group_->release(rank_, "all_reduce_sum");  // the others have read x: now it may change
    std::memcpy(x.data(), sum.data(), n * sizeof(float));
  }

  void all_gather(const Tensor& x, Tensor out) override {
    expect_host_contiguous(x, "all_gather");
    expect_host_contiguous(out, "all_gather output");
    NC_CHECK(x.ndim() == 2, "tensor parallel all_gather: x {} is not [rows, columns]",
             shape_str(x.shape()));
    out.expect_shape({x.dim(0), size() * x.dim(1)}, "tensor parallel all_gather output");
    out.expect_dtype(x.dtype(), "tensor parallel all_gather output");
    const auto parts =
        group_->meet(rank_, "all_gather", {x.data(), int64_t(x.nbytes())}, /*same_bytes=*/true);
    const size_t row = size_t(x.nbytes()) / size_t(std::max<int64_t>(x.dim(0), 1));
    auto* dst = static_cast<std::byte*>(out.data());
    for (int64_t r = 0; r < x.dim(0); ++r)
      for (const ThreadGroup::Published& p : parts) {
        std::memcpy(dst, static_cast<const std::byte*>(p.data) + size_t(r) * row, row);
        dst += row;
      }
    group_->release(rank_, "all_gather");
  }

  void broadcast(std::vector<std::byte>& bytes, int root, Wait wait = Wait::Bounded) override {
    NC_CHECK(root >= 0 && root < size(), "tensor parallel broadcast: root {} outside [0, {})", root,
             size());
    const auto parts = group_->meet(rank_, "broadcast", {bytes.data(), int64_t(bytes.size())},
                                    /*same_bytes=*/false, wait == Wait::Unbounded);
    std::vector<std::byte> copy;
    if (rank_ != root) {
      const auto* p = static_cast<const std::byte*>(parts[size_t(root)].data);
      copy.assign(p, p + parts[size_t(root)].bytes);
    }
    group_->release(rank_, "broadcast");
    if (rank_ != root) bytes = std::move(copy);
  }

  void abort(const std::string& why) override { group_->fail(rank_, why); }
  std::string failure() override { return group_->failure(); }

 private:
  std::shared_ptr<ThreadGroup> group_;
  int rank_;
};

}  // namespace

std::shared_ptr<ThreadGroup> ThreadGroup::make(int size, std::chrono::milliseconds timeout) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, size >= 1 && size <= 1024,
              "tensor parallel: group size {} (1..1024)", size);
  NC_CHECK_AS(ErrorKind::InvalidArgument, timeout.count() > 0,
              "tensor parallel: timeout {} ms (must be > 0)", timeout.count());
  return std::shared_ptr<ThreadGroup>(new ThreadGroup(size, timeout));
}

ThreadGroup::ThreadGroup(int size, std::chrono::milliseconds timeout)
    : size_(size), timeout_(timeout), slots_(size_t(size)), arrivals_(size_t(size), 0) {}

std::unique_ptr<Communicator> ThreadGroup::communicator(int rank) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, rank >= 0 && rank < size_,
              "tensor parallel: rank {} outside [0, {})", rank, size_);
  return std::make_unique<ThreadCommunicator>(shared_from_this(), rank);
}

std::string ThreadGroup::failure() {
  std::lock_guard<std::mutex> lock(mutex_);
  return failure_;
}

void ThreadGroup::fail(int rank, const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (failure_.empty()) failure_ = fmt::format("rank {} failed: {}", rank, why);
  }
  cv_.notify_all();
}

// Enters rank's next rendezvous and waits until every rank has entered it.
void ThreadGroup::wait_all(std::unique_lock<std::mutex>& lock, int rank, const char* what,
                           bool unbounded) {
  NC_CHECK(failure_.empty(), "tensor parallel group stopped before rank {}'s {}: {}", rank, what,
           failure_);
  const uint64_t round = ++arrivals_[size_t(rank)];
  bool all = true;
  for (uint64_t a : arrivals_) all = all && a >= round;
  if (all) {
    completed_ = round;
    cv_.notify_all();
    return;
  }
  const auto done = [&] { return completed_ >= round || !failure_.empty(); };
  bool met = true;
  if (unbounded)
    cv_.wait(lock, done);
  else
    met = cv_.wait_for(lock, timeout_, done);
  if (!met) {
    failure_ = fmt::format("rank {} waited {} ms in {} for rank(s) {}", rank, timeout_.count(),
                           what, missing_ranks(arrivals_, round));
    cv_.notify_all();
  }
  NC_CHECK(completed_ >= round, "tensor parallel group stopped in rank {}'s {}: {}", rank, what,
           failure_);
}

std::vector<ThreadGroup::Published> ThreadGroup::meet(int rank, const char* what, Published mine,
                                                      bool same_bytes, bool unbounded) {
  std::unique_lock<std::mutex> lock(mutex_);
  mine.what = what;
  slots_[size_t(rank)] = mine;
  wait_all(lock, rank, what, unbounded);
  std::vector<Published> parts = slots_;
  for (int r = 1; r < size_; ++r) {
    if (std::strcmp(parts[size_t(r)].what, parts[0].what) == 0) continue;
    if (failure_.empty())
      failure_ = fmt::format("rank 0 called {} where rank {} called {}", parts[0].what, r,
                             parts[size_t(r)].what);
    cv_.notify_all();
    fail_as(ErrorKind::Internal, "tensor parallel: rank 0 called {} where rank {} called {}",
            parts[0].what, r, parts[size_t(r)].what);
  }
  if (same_bytes) {
    for (int r = 1; r < size_; ++r) {
      if (parts[size_t(r)].bytes == parts[0].bytes) continue;
      if (failure_.empty())
        failure_ = fmt::format("{}: rank 0 has {} bytes, rank {} has {}", what, parts[0].bytes, r,
                               parts[size_t(r)].bytes);
      cv_.notify_all();
      fail_as(ErrorKind::InvalidArgument, "tensor parallel {}: rank 0 has {} bytes, rank {} has {}",
              what, parts[0].bytes, r, parts[size_t(r)].bytes);
    }
  }
  return parts;
}

void ThreadGroup::release(int rank, const char* what) {
  std::unique_lock<std::mutex> lock(mutex_);
  wait_all(lock, rank, what, /*unbounded=*/false);
}

}  // namespace nc

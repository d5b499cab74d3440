// The collectives of tensor parallelism (issue #21; docs/architecture.md): a group of `size`
// ranks, each running the same sharded model on its own backend, combines partial results with
// these calls. The CPU form is dist/thread_group.h (ranks as threads of one process, over
// shared memory); a GPU form over NCCL implements the same interface.
//
// Contract:
//   - Every rank of a group calls the same collectives in the same order, with tensors of the
//     same shape and dtype on each rank; a mismatch is an error on every rank (naming the ranks
//     and the sizes), never a silent wrong result.
//   - all_reduce_sum(x): in place, x = the elementwise sum of every rank's x. Every rank gets
//     the same bits: the ranks' values are added in rank order (0, 1, ..., size - 1), whatever
//     the order in which they arrive.
//   - all_gather(x, out): out = the ranks' x [R, C] concatenated along the last dimension in rank
//     order (out [R, size * C]: a vocabulary shard's logits become the whole vocabulary's).
//   - broadcast(bytes, root, wait): every rank's bytes become root's (rank 0 sends each step's
//     plan, plain host arrays, to the others this way). Wait::Unbounded lets a rank wait for the
//     root without the group's timeout (a worker idle between steps); a root that fails or whose
//     process ends still stops it at once.
//   - A rank that fails (abort) or does not arrive within the group's timeout stops the group:
//     every rank waiting in, or later entering, a collective throws an nc::Error naming the rank
//     and the collective; no rank waits forever.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace nc {

class Communicator {
 public:
  enum class Wait { Bounded, Unbounded };
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual void all_reduce_sum(Tensor x) = 0;
  virtual void all_gather(const Tensor& x, Tensor out) = 0;
  virtual void broadcast(std::vector<std::byte>& bytes, int root, Wait wait = Wait::Bounded) = 0;
  // This rank cannot go on (an exception in its step): the group stops, with `why` in the
  // errors the other ranks get.
  virtual void abort(const std::string& why) = 0;
  // Why the group has stopped, or "" while it runs; never blocks. Called on rank 0 between
  // collectives (an idle server's health check), it also notices a rank that failed or went
  // away since; not thread-safe with the collectives unless the communicator says so.
  virtual std::string failure() = 0;
  // Scratch that all_gather of up to `bytes` of output needs, made now (before graph capture);
  // none on the CPU.
  virtual void reserve_gather(int64_t /*bytes*/) {}
};

}  // namespace nc

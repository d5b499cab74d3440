// Tensor parallelism's communicator for ranks that are separate processes, on one machine or
// several, over TCP (dist/communicator.h gives the contract; dist/tcp_link.h the links). Rank 0
// listens at the group's address and every other rank connects to it: a star. Each collective
// goes through rank 0, which adds the ranks' values in rank order, so the results have the bits
// of the thread group's (dist/thread_group.h) and of the whole model's reduction order: what CI
// checks two processes (or two "machines" on one host, `--nnodes 2`) against.
//
// This is the CPU backend's transport between processes; a GPU group runs its tensors over NCCL
// (dist/nccl_communicator.h) and uses a socket group only for NCCL's bootstrap and the plans.
//
//   // rank 0:
//   auto root = make_socket_root(std::make_unique<TcpListener>(HostPort{"0.0.0.0", 29500}), 4,
//                                600s, 30s);
//   // every other rank r:
//   auto comm = make_socket_peer({"10.0.0.1", 29500}, r, 4, 600s, 30s);
//
// Set-up: rank 0 waits (up to the timeout) until size - 1 ranks have connected, each naming its
// rank and the group size; a duplicate rank or a different size is an error on both sides. A
// rank that cannot join (its shard did not load; or its process died, told by the process that
// started it, cli/tp_ranks.h) sends the reason instead (report_join_failure): rank 0 stops the
// set-up at once with it, instead of waiting out the join time.
// Faults: a rank that fails sends the reason (abort), and rank 0 passes it to the others; a rank
// whose process dies closes its socket, which the others see at once; a rank that does not come
// within the timeout stops the group. In every case each rank's collective throws an nc::Error
// naming the rank, and every later one throws too.
#pragma once
#include <chrono>
#include <memory>
#include <string>

#include "dist/communicator.h"
#include "dist/tcp_link.h"

namespace nc {

// `join`: how long the set-up waits for every rank (they may load their shards first);
// `timeout`: how long one collective waits.
std::unique_ptr<Communicator> make_socket_root(std::unique_ptr<TcpListener> listener, int size,
                                               std::chrono::milliseconds join,
                                               std::chrono::milliseconds timeout);
std::unique_ptr<Communicator> make_socket_peer(const HostPort& root, int rank, int size,
                                               std::chrono::milliseconds join,
                                               std::chrono::milliseconds timeout);

// Tells rank 0 at `root` that rank `rank` will not join, and why; its set-up then fails with that
// reason. Best effort within `wait`: false when rank 0 was not listening (not yet, or any more).
bool report_join_failure(const HostPort& root, int rank, const std::string& why,
                         std::chrono::milliseconds wait);

}  // namespace nc

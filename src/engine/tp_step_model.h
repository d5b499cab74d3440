// Tensor parallelism in the engine (issue #21; docs/models.md, "Tensor parallelism"): one model
// split over `size` ranks (model/tensor_parallel.h), each rank a shard on its own backend with
// its own KV pages (the same page ids on every rank: one plan for all), all running every step
// together. The engine sees one StepModel, rank 0's: its scheduler plans each step once, rank 0
// sends the plan to the other ranks as bytes (engine/tp_rank.h's commands, broadcast), every
// rank runs it, and rank 0's logits (the whole vocabulary) are sampled on the host.
//
// Where the ranks run:
//   - cpu backend, one node, no dist_init_addr: threads of this process, their collectives in
//     shared memory (dist/thread_group.h). What most CI tests use.
//   - otherwise processes: rank 0 (this engine) listens at dist_init_addr and every other rank,
//     started with run_tensor_parallel_worker() (the CLI starts this machine's; each other machine
//     runs its own), connects there (dist/socket_group.h). On the cpu backend the tensors'
//     collectives go over those sockets; on CUDA, one process per GPU (GPU = rank % ranks per
//     node), over NCCL (backend/nccl.h).
// A rank that fails stops the group: the step throws an nc::Error naming the rank, and every later
// step throws it too (the engine reports it).
#pragma once
#include <memory>
#include <string>

#include "engine/step_model.h"

namespace nc {

// size >= 2 = options.tensor_parallel_size. Sparse attention, the host tier and FP8 weights are
// refused by name.
std::unique_ptr<StepModel> make_tensor_parallel_step_model(const std::string& path,
                                                           const StepModelOptions& options,
                                                           int size);

// Rank `rank` (1 .. size - 1) as a process: loads its shard, joins rank 0 at
// options.dist_init_addr and serves its steps until rank 0 stops (returns) or the group fails
// (throws).
void run_tensor_parallel_worker(const std::string& path, const StepModelOptions& options, int rank);

}  // namespace nc

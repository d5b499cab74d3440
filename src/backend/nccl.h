// Tensor parallelism's GPU collectives over NCCL (issue #21; docs/models.md, "Tensor
// parallelism"): the Communicator (dist/communicator.h) of a rank whose model runs on the CUDA
// backend, one process per GPU. The tensors' collectives (all_reduce_sum, all_gather) are NCCL
// calls on the backend's stream, so they are ordered with the model's kernels and captured into
// its CUDA graphs; broadcast (the plans) and abort go through `control`, a socket group over the
// same ranks (dist/socket_group.h), which also hands out NCCL's unique id.
//
// NCCL is loaded at run time (dlopen of libnccl.so.2, or the file NC_NCCL_LIBRARY names): the
// binary runs without it, and only a tensor-parallel CUDA group needs it. The header comes from
// the nvidia-nccl-cu13 wheel (tools/setup.sh); a build without it, or without CUDA, throws an
// Unsupported nc::Error naming NCCL.
//
// Contract beyond the Communicator's:
//   - all_reduce_sum sums in NCCL's order, not rank order: every rank still gets the same bits
//     (NCCL's ring and tree all-reduce reduce each element once and copy the result), but they may
//     differ from the CPU communicators' rank-order sum in the last place.
//   - all_gather needs a scratch of size * x's bytes; it grows outside graph capture and is an
//     error (naming the bytes) if a captured pass needs more than reserve_gather() made.
//   - A rank that fails aborts the NCCL communicator (ncclCommAbort) as well as the control
//     group, so no rank waits forever in a collective. While a pass runs, a watchdog thread
//     (every 200 ms) aborts the NCCL group when rank 0's control links show a failed or ended
//     rank, or NCCL reports an error of its own; failure() then says why.
//   - Unlike the CPU communicators, NCCL does not check that every rank calls the same
//     collective with the same size: the ranks run one plan (engine/tp_rank.h), so they do.
#pragma once
#include <array>
#include <cstddef>
#include <memory>

#include "backend/backend.h"
#include "dist/communicator.h"

namespace nc {

using NcclUniqueId = std::array<std::byte, 128>;

// Whether this build has the NCCL entry points (CUDA and the header); the library itself is
// found only when a communicator is made.
bool nccl_built();
// Rank 0 makes the group's id and broadcasts it over the control group.
NcclUniqueId nccl_unique_id();
// Rank control->rank() of control->size(), on `cuda` (a CUDA backend; its device and stream).
std::unique_ptr<Communicator> make_nccl_communicator(Backend& cuda,
                                                     std::unique_ptr<Communicator> control,
                                                     const NcclUniqueId& id);

}  // namespace nc

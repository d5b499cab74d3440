// One rank of a tensor-parallel group (engine/tp_step_model.h): its shard of the model as a
// StepModel on its own backend, and the commands rank 0 sends the other ranks. Rank 0 runs the
// engine; every other rank (a thread, or a process on this machine or another) runs
// serve_tp_rank(): it waits for rank 0's next command (a broadcast of bytes), runs it on its
// shard, and waits again, until rank 0 says stop.
//
// Commands, in the order the engine calls them: Reserve (the workspace), AllocateKv (the same
// page count and page size on every rank: one plan for all), Forward (a step's plan,
// model/forward_wire.h), Stop. A Forward's collectives (two all-reduces a layer, the vocabulary's
// gather) meet rank 0's inside the pass.
#pragma once
#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

#include "backend/backend.h"
#include "dist/communicator.h"
#include "engine/llama_step_model.h"
#include "model/model_loader.h"

namespace nc {

enum class TpCommand : uint8_t { Reserve = 1, AllocateKv, Forward, Stop };

std::vector<std::byte> tp_reserve_command(int max_tokens, int max_rows);
std::vector<std::byte> tp_allocate_kv_command(int num_pages, int page_size, KVLayout layout);
std::vector<std::byte> tp_forward_command(const ForwardInput& in);
std::vector<std::byte> tp_stop_command();

// The model to shard: loaded from a checkpoint (weights) or its config alone (random weights,
// seeded per rank).
struct TpSource {
  ModelConfig full;
  std::optional<LoadedModel> loaded;
};
TpSource load_tp_source(const std::string& path, const StepModelOptions& o);

// Rank `rank`'s shard on `backend`; its collectives go through the communicator given to
// shard->model().set_tensor_parallel() (made after the shard: a rank loads, then joins).
std::unique_ptr<LlamaStepModel> make_tp_shard(const TpSource& source, const StepModelOptions& o,
                                              int rank, int size, std::unique_ptr<Backend> backend);

// A rank other than 0: runs rank 0's commands on `shard` until Stop. Any failure (a command's,
// or the group's: rank 0 failed or went away) aborts this rank's end of the group (NCCL's too,
// so no kernel waits on a collective that will not come) and is rethrown.
void serve_tp_rank(StepModel& shard, Communicator& comm);

}  // namespace nc

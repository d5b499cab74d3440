// Tensor parallelism in the engine (issue #21; docs/models.md, "Tensor parallelism"): one model
// split over `size` ranks (model/tensor_parallel.h), each rank a shard on its own backend with
// its own KV pages (the same page ids on every rank: one plan for all), all running every step
// together. The engine sees one StepModel: its scheduler plans each step once, rank 0 sends the
// plan to the other ranks as bytes (model/forward_wire.h, Communicator::broadcast), every rank
// runs it, and rank 0's logits come back (sampled on the host).
//
// On the CPU backend the ranks are threads of this process whose collectives meet in shared
// memory (dist/thread_group.h): what CI tests tensor parallelism with. CUDA ranks need NCCL,
// not built yet: an Unsupported nc::Error. A rank that fails stops the group: the step throws
// an nc::Error naming the rank, and every later step throws it too (the engine reports it).
#pragma once
#include <memory>
#include <string>

#include "engine/step_model.h"

namespace nc {

// size >= 2; options.backend "cpu" (see above). Sparse attention, the host tier and FP8 weights
// are refused by name.
std::unique_ptr<StepModel> make_tensor_parallel_step_model(const std::string& path,
                                                           const StepModelOptions& options,
                                                           int size);

}  // namespace nc

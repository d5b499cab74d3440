// Tensor parallelism's processes on this machine (docs/models.md, "Tensor parallelism"): one
// `nanocascade serve|generate|bench|chat --tensor-parallel-size N` command starts the ranks
// this machine runs. Rank 0 is the command's own engine; the machine's other ranks are child
// processes, this same command line again with `--tp-rank R` (and the group's address), which
// serve their rank (run_tensor_parallel_rank) and exit when rank 0 stops. On a node other than 0
// (`--node-rank K`) the command runs no engine: it serves its first rank itself and returns.
//
//   void run_generate(const GenerateArgs& a) {
//     TensorParallelRanks ranks(a.engine);
//     if (ranks.served()) return;          // this process was a rank other than 0
//     Engine engine(ranks.config());       // the config, with the group's address filled in
//
// Ranks are processes on the cuda backend (one per GPU), with --nnodes > 1, or when
// --dist-init-addr is given; otherwise (cpu, one node) they are threads and nothing starts here.
// A single machine without --dist-init-addr meets on a free port of 127.0.0.1. Children die with
// their parent (PR_SET_PDEATHSIG); the destructor waits for them (then kills what is left). A
// child that ends abnormally (a crash, the OOM killer) cannot tell rank 0 itself: a watcher
// (dist/rank_watch.h) tells rank 0 for it, so that a group still forming fails at once, naming
// the rank, instead of waiting out the join time.
#pragma once
#include <sys/types.h>

#include <memory>
#include <vector>

#include "cli/cli_common.h"
#include "dist/rank_watch.h"

namespace nc::cli {

class TensorParallelRanks {
 public:
  explicit TensorParallelRanks(const EngineFlags& flags);
  ~TensorParallelRanks();
  TensorParallelRanks(const TensorParallelRanks&) = delete;
  TensorParallelRanks& operator=(const TensorParallelRanks&) = delete;

  bool served() const { return served_; }
  const EngineConfig& config() const { return cfg_; }

 private:
  void start_children(int first_rank, int count);
  void stop_children();
  EngineConfig cfg_;
  std::vector<RankProcess> children_;
  std::unique_ptr<RankProcessWatch> watch_;  // while the children run
  bool served_ = false;
};

}  // namespace nc::cli

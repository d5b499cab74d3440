// Tensor parallelism's processes on this machine (cli/tp_ranks.h).
#include "cli/tp_ranks.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <exception>
#include <thread>

#include "core/error.h"
#include "dist/rank_watch.h"
#include "dist/tcp_link.h"

namespace nc::cli {
namespace {

// How long the destructor waits for the children after rank 0 stopped them.
constexpr std::chrono::seconds kChildExitWait{60};

bool ranks_are_processes(const EngineConfig& c) {
  return c.tensor_parallel_size > 1 &&
         (c.backend == "cuda" || c.nnodes > 1 || !c.dist_init_addr.empty());
}

void check_layout(const EngineConfig& c) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, c.node_rank >= 0 && c.node_rank < c.nnodes,
              "--node-rank {} outside [0, --nnodes {})", c.node_rank, c.nnodes);
  NC_CHECK_AS(ErrorKind::InvalidArgument, c.tensor_parallel_size % c.nnodes == 0,
              "--tensor-parallel-size {} over --nnodes {}: each machine runs the same number of "
              "ranks",
              c.tensor_parallel_size, c.nnodes);
  NC_CHECK_AS(ErrorKind::InvalidArgument, c.nnodes == 1 || !c.dist_init_addr.empty(),
              "--nnodes {} needs --dist-init-addr (host:port of node 0)", c.nnodes);
  if (!c.dist_init_addr.empty()) (void)parse_host_port(c.dist_init_addr);  // names a bad one
}

}  // namespace

TensorParallelRanks::TensorParallelRanks(const EngineFlags& flags) : cfg_(flags.cfg) {
  if (flags.tp_rank >= 0) {  // a child started by the command below: serve, then leave
    run_tensor_parallel_rank(cfg_, flags.tp_rank);
    served_ = true;
    return;
  }
  check_layout(cfg_);
  if (!ranks_are_processes(cfg_)) return;
  if (cfg_.dist_init_addr.empty()) cfg_.dist_init_addr = free_local_address();
  const int per_node = cfg_.tensor_parallel_size / cfg_.nnodes;
  const int first = cfg_.node_rank * per_node;
  try {
    start_children(first + 1, per_node - 1);
    if (!children_.empty())  // one rank a node: nothing to watch, no thread
      watch_ = std::make_unique<RankProcessWatch>(parse_host_port(cfg_.dist_init_addr), children_);
    if (cfg_.node_rank == 0) return;  // this process is rank 0: the command's engine
    run_tensor_parallel_rank(cfg_, first);
    served_ = true;
  } catch (...) {
    stop_children();  // no destructor runs for a constructor that throws
    throw;
  }
}

void TensorParallelRanks::stop_children() {
  watch_.reset();
  for (const RankProcess& c : children_) ::kill(c.pid, SIGKILL);
  for (const RankProcess& c : children_) ::waitpid(c.pid, nullptr, 0);
  children_.clear();
}

void TensorParallelRanks::start_children(int first_rank, int count) {
  const pid_t parent = ::getpid();
  for (int r = first_rank; r < first_rank + count; ++r) {
    std::vector<std::string> args = command_line();
    args.insert(args.end(),
                {"--dist-init-addr", cfg_.dist_init_addr, "--tp-rank", std::to_string(r)});
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    NC_CHECK(pid >= 0, "tensor parallel: cannot start rank {} (fork failed)", r);
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the group ends with its rank 0's process
      // Ctrl-C reaches the whole process group: the parent stops its ranks itself.
      struct sigaction ignore {};
      ignore.sa_handler = SIG_IGN;
      ::sigaction(SIGINT, &ignore, nullptr);
      if (::getppid() != parent) ::_exit(1);
      ::execv("/proc/self/exe", argv.data());
      ::_exit(127);
    }
    children_.push_back({pid, r});
  }
}

TensorParallelRanks::~TensorParallelRanks() {
  watch_.reset();
  // Leaving on an error (rank 0's engine never came up, or failed): the children may be waiting
  // to join a group that will not form.
  if (std::uncaught_exceptions() > 0) {
    stop_children();
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + kChildExitWait;
  for (const RankProcess& c : children_) {
    const pid_t pid = c.pid;
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

}  // namespace nc::cli

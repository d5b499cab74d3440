// Watches the processes of one machine's tensor-parallel ranks (the children cli/tp_ranks.h
// starts) and tells rank 0 when one ends abnormally. A rank whose shard fails to load says so
// itself (report_join_failure, dist/socket_group.h); one that crashes or is killed (the OOM
// killer, a signal) cannot, and rank 0 would wait for it to join for the whole join time. The
// watcher says it for the rank, naming how the process ended:
//
//   RankProcessWatch watch(parse_host_port(addr), {{pid_of_rank_1, 1}, {pid_of_rank_2, 2}});
//   // rank 0's set-up now fails with "rank 2 could not join: its process (pid 4321) was killed
//   // by signal 9 (Killed)" within ~0.1 s of that end
//
// Contract:
//   - A thread looks at each process every 100 ms without reaping it (the owner still waits for
//     its children); an exit with status 0 is a rank that served and left, not reported.
//   - Each process's end is reported once, offered every ~0.35 s until rank 0 takes it (its
//     listener may not be up yet) or 900 s pass (after the group formed nobody listens at the
//     address any more: the dead rank's closed socket told rank 0 first).
//   - Destroying the watch stops the thread within ~0.35 s (before its owner kills or reaps
//     the processes).
#pragma once
#include <sys/types.h>

#include <atomic>
#include <thread>
#include <vector>

#include "dist/tcp_link.h"

namespace nc {

struct RankProcess {
  pid_t pid;
  int rank;
};

class RankProcessWatch {
 public:
  RankProcessWatch(HostPort root, std::vector<RankProcess> processes);
  ~RankProcessWatch();
  RankProcessWatch(const RankProcessWatch&) = delete;
  RankProcessWatch& operator=(const RankProcessWatch&) = delete;

 private:
  void watch();
  HostPort root_;
  std::vector<RankProcess> processes_;
  std::atomic<bool> running_{true};
  std::thread thread_;
};

}  // namespace nc

// The watcher of one machine's rank processes (dist/rank_watch.h).
#include "dist/rank_watch.h"

#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <string>

#include "core/error.h"
#include "dist/socket_group.h"

namespace nc {
namespace {

constexpr std::chrono::milliseconds kWatchInterval{100};
// How long one report tries to reach rank 0.
constexpr std::chrono::seconds kReportTime{2};

// "its process (pid 1234) was killed by signal 9 (Killed)", for a process that ended.
std::string end_text(pid_t pid, const siginfo_t& info) {
  if (info.si_code == CLD_EXITED)
    return fmt::format("its process (pid {}) exited with status {}", pid, info.si_status);
  return fmt::format("its process (pid {}) was killed by signal {} ({})", pid, info.si_status,
                     strsignal(info.si_status));
}

// The process's end, without reaping it (WNOWAIT); false while it runs.
bool ended(pid_t pid, siginfo_t* info) {
  *info = siginfo_t{};
  return ::waitid(P_PID, id_t(pid), info, WEXITED | WNOHANG | WNOWAIT) == 0 && info->si_pid != 0;
}

}  // namespace

RankProcessWatch::RankProcessWatch(HostPort root, std::vector<RankProcess> processes)
    : root_(std::move(root)), processes_(std::move(processes)), thread_([this] { watch(); }) {}

RankProcessWatch::~RankProcessWatch() {
  running_ = false;
  thread_.join();
}

void RankProcessWatch::watch() {
  std::vector<bool> seen(processes_.size(), false);
  while (running_) {
    for (size_t i = 0; i < processes_.size(); ++i) {
      siginfo_t info;
      if (seen[i] || !ended(processes_[i].pid, &info)) continue;
      seen[i] = true;
      if (info.si_code == CLD_EXITED && info.si_status == 0) continue;
      report_join_failure(root_, processes_[i].rank, end_text(processes_[i].pid, info),
                          kReportTime);
    }
    std::this_thread::sleep_for(kWatchInterval);
  }
}

}  // namespace nc

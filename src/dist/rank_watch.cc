// The watcher of one machine's rank processes (dist/rank_watch.h).
#include "dist/rank_watch.h"

#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "dist/socket_group.h"

namespace nc {
namespace {

constexpr std::chrono::milliseconds kWatchInterval{100};
// One attempt to reach rank 0 (its listener may not be up yet: it loads its own shard first), and
// how long a process's end is offered (rank 0's join time; the watch's end stops it sooner).
constexpr std::chrono::milliseconds kReportAttempt{250};
constexpr std::chrono::seconds kReportWindow{900};

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
  // Per process: still running, ended and being reported (until `until`), or done.
  enum class State { Running, Reporting, Done };
  std::vector<State> state(processes_.size(), State::Running);
  std::vector<std::string> why(processes_.size());
  std::vector<std::chrono::steady_clock::time_point> until(processes_.size());
  while (running_) {
    for (size_t i = 0; i < processes_.size() && running_; ++i) {
      siginfo_t info;
      if (state[i] == State::Running && ended(processes_[i].pid, &info)) {
        const bool clean = info.si_code == CLD_EXITED && info.si_status == 0;
        state[i] = clean ? State::Done : State::Reporting;
        why[i] = end_text(processes_[i].pid, info);
        until[i] = std::chrono::steady_clock::now() + kReportWindow;
      }
      if (state[i] != State::Reporting) continue;
      if (report_join_failure(root_, processes_[i].rank, why[i], kReportAttempt) ||
          std::chrono::steady_clock::now() > until[i])
        state[i] = State::Done;
    }
    std::this_thread::sleep_for(kWatchInterval);
  }
}

}  // namespace nc

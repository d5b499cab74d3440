// The CUDA backend's graph runner and forward-pass timer.
//
// GraphRunner records the work enqueued on the context's stream between begin_capture() and
// end_capture(key) as graph `key` (thread-local capture mode; nothing runs while capturing) and
// replays it on the same stream. A key holds at most one graph: capturing it again replaces it.
// stats(key) says what the capture recorded: its nodes, its kernel nodes and how many of its
// edges are programmatic (kernels launched with programmatic dependent launch, pdl.h, keep that
// overlap inside the graph; CUDA 12.3+).
// PassTimer brackets forward passes with events (not while capturing: a graph's replay is
// timed by the pass around it) and sums the device time of the passes that have completed.
#pragma once
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_context.h"

namespace nc::cuda_host {

struct GraphStats {
  int nodes = 0;
  int kernels = 0;
  int programmatic_edges = 0;
};

class GraphRunner : NonCopyable {
 public:
  explicit GraphRunner(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}
  ~GraphRunner();

  void begin_capture();
  void end_capture(int key);  // key < 0: discard what was recorded
  bool has_graph(int key) const { return graphs_.count(key) > 0; }
  void replay(int key);
  void drop(int key);  // no-op when there is no graph `key`
  void clear();
  bool capturing() const { return capturing_; }
  // What graph `key` holds (zeros when there is none).
  GraphStats stats(int key) const;
  std::vector<int> keys() const;

 private:
  std::shared_ptr<Context> ctx_;
  std::map<int, cudaGraphExec_t> graphs_;
  std::map<int, GraphStats> stats_;
  bool capturing_ = false;
};

class PassTimer : NonCopyable {
 public:
  PassTimer(std::shared_ptr<Context> ctx, const GraphRunner& graphs)
      : ctx_(std::move(ctx)), graphs_(graphs) {}
  ~PassTimer();

  void mark_pass_begin();
  void mark_pass_end();
  // Summed device time of the completed passes; never waits.
  double busy_seconds();

 private:
  cudaEvent_t event();
  // Adds the device time of the passes that have finished to busy_s_, in order, without waiting
  // (an asynchronous engine plans the next step while one runs). wait_all: also the others.
  void collect_passes(bool wait_all = false);

  std::shared_ptr<Context> ctx_;
  const GraphRunner& graphs_;
  // (begin, end) event pairs not yet read, and spare events.
  std::vector<std::pair<cudaEvent_t, cudaEvent_t>> pending_passes_;
  std::vector<cudaEvent_t> spare_events_;
  cudaEvent_t pass_begin_ = nullptr;
  double busy_s_ = 0;
};

}  // namespace nc::cuda_host

// Graph capture/replay and pass timing of the CUDA backend (cuda_graphs.h).
#include "backend/cuda/cuda_graphs.h"

namespace nc::cuda_host {

GraphRunner::~GraphRunner() {
  cudaStreamSynchronize(ctx_->stream);
  for (auto& [key, g] : graphs_) cudaGraphExecDestroy(g);
}

void GraphRunner::begin_capture() {
  NC_CHECK(!capturing_, "begin_capture: already capturing");
  cuda_check(cudaStreamBeginCapture(ctx_->stream, cudaStreamCaptureModeThreadLocal),
             "cudaStreamBeginCapture");
  capturing_ = true;
}

void GraphRunner::end_capture(int key) {
  NC_CHECK(capturing_, "end_capture: not capturing");
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  const cudaError_t e = cudaStreamEndCapture(ctx_->stream, &graph);
  if (key < 0 || e != cudaSuccess) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();  // a failed capture leaves a sticky-free error: clear it
    cuda_check(e, "cudaStreamEndCapture");
    return;
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t ie = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  cuda_check(ie, "cudaGraphInstantiate");
  drop(key);
  graphs_[key] = exec;
}

void GraphRunner::replay(int key) {
  auto it = graphs_.find(key);
  NC_CHECK(it != graphs_.end(), "replay: no graph {}", key);
  cuda_check(cudaGraphLaunch(it->second, ctx_->stream), "cudaGraphLaunch");
}

void GraphRunner::drop(int key) {
  auto it = graphs_.find(key);
  if (it == graphs_.end()) return;
  cudaGraphExecDestroy(it->second);
  graphs_.erase(it);
}

void GraphRunner::clear() {
  for (auto& [key, g] : graphs_) cudaGraphExecDestroy(g);
  graphs_.clear();
}

PassTimer::~PassTimer() {
  for (auto& [a, b] : pending_passes_) cudaEventDestroy(a), cudaEventDestroy(b);
  for (cudaEvent_t e : spare_events_) cudaEventDestroy(e);
  if (pass_begin_) cudaEventDestroy(pass_begin_);
}

void PassTimer::mark_pass_begin() {
  if (graphs_.capturing()) return;
  if (!pass_begin_) pass_begin_ = event();
  cuda_check(cudaEventRecord(pass_begin_, ctx_->stream), "cudaEventRecord");
}

void PassTimer::mark_pass_end() {
  if (graphs_.capturing() || !pass_begin_) return;
  cudaEvent_t end = event();
  cuda_check(cudaEventRecord(end, ctx_->stream), "cudaEventRecord");
  pending_passes_.emplace_back(pass_begin_, end);
  pass_begin_ = nullptr;
  if (pending_passes_.size() > 4096) collect_passes(true);
}

double PassTimer::busy_seconds() {
  collect_passes();
  return busy_s_;
}

cudaEvent_t PassTimer::event() {
  if (!spare_events_.empty()) {
    cudaEvent_t e = spare_events_.back();
    spare_events_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  cuda_check(cudaEventCreate(&e), "cudaEventCreate");
  return e;
}

void PassTimer::collect_passes(bool wait_all) {
  size_t done = 0;
  for (; done < pending_passes_.size(); ++done) {
    auto [a, b] = pending_passes_[done];
    const cudaError_t q = wait_all ? cudaEventSynchronize(b) : cudaEventQuery(b);
    if (q == cudaErrorNotReady) {
      (void)cudaGetLastError();  // not an error: the pass is still running
      break;
    }
    float ms = 0;
    if (q == cudaSuccess && cudaEventElapsedTime(&ms, a, b) == cudaSuccess)
      busy_s_ += double(ms) * 1e-3;
    spare_events_.push_back(a);
    spare_events_.push_back(b);
  }
  pending_passes_.erase(pending_passes_.begin(), pending_passes_.begin() + std::ptrdiff_t(done));
}

}  // namespace nc::cuda_host

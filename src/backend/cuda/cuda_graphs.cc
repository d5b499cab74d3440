// Graph capture/replay and pass timing of the CUDA backend (cuda_graphs.h).
#include "backend/cuda/cuda_graphs.h"

#include <vector>

namespace nc::cuda_host {
namespace {

GraphStats graph_stats(cudaGraph_t graph) {
  GraphStats st;
  size_t n = 0;
  cuda_check(cudaGraphGetNodes(graph, nullptr, &n), "cudaGraphGetNodes");
  std::vector<cudaGraphNode_t> nodes(n);
  if (n > 0) cuda_check(cudaGraphGetNodes(graph, nodes.data(), &n), "cudaGraphGetNodes");
  st.nodes = int(n);
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType t{};
    cuda_check(cudaGraphNodeGetType(node, &t), "cudaGraphNodeGetType");
    st.kernels += t == cudaGraphNodeTypeKernel;
  }
  size_t e = 0;
  // Edge types came with CUDA 12.3 (cudaGraphGetEdges_v2; the plain name from 13.0).
#if CUDART_VERSION >= 13000
  const auto get_edges = [&](cudaGraphNode_t* f, cudaGraphNode_t* t, cudaGraphEdgeData* d) {
    return cudaGraphGetEdges(graph, f, t, d, &e);
  };
#elif CUDART_VERSION >= 12030
  const auto get_edges = [&](cudaGraphNode_t* f, cudaGraphNode_t* t, cudaGraphEdgeData* d) {
    return cudaGraphGetEdges_v2(graph, f, t, d, &e);
  };
#endif
#if CUDART_VERSION >= 12030
  cuda_check(get_edges(nullptr, nullptr, nullptr), "cudaGraphGetEdges");
  std::vector<cudaGraphNode_t> from(e), to(e);
  std::vector<cudaGraphEdgeData> data(e);
  if (e > 0) cuda_check(get_edges(from.data(), to.data(), data.data()), "cudaGraphGetEdges");
  for (const cudaGraphEdgeData& d : data)
    st.programmatic_edges += d.type == cudaGraphDependencyTypeProgrammatic;
#endif
  return st;
}

}  // namespace

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
  GraphStats st;
  try {
    st = graph_stats(graph);
  } catch (...) {
    cudaGraphDestroy(graph);
    throw;
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t ie = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  cuda_check(ie, "cudaGraphInstantiate");
  drop(key);
  graphs_[key] = exec;
  stats_[key] = st;
}

void GraphRunner::replay(int key) {
  auto it = graphs_.find(key);
  NC_CHECK(it != graphs_.end(), "replay: no graph {}", key);
  cuda_check(cudaGraphLaunch(it->second, ctx_->stream), "cudaGraphLaunch");
}

void GraphRunner::drop(int key) {
  stats_.erase(key);
  auto it = graphs_.find(key);
  if (it == graphs_.end()) return;
  cudaGraphExecDestroy(it->second);
  graphs_.erase(it);
}

void GraphRunner::clear() {
  for (auto& [key, g] : graphs_) cudaGraphExecDestroy(g);
  graphs_.clear();
  stats_.clear();
}

GraphStats GraphRunner::stats(int key) const {
  auto it = stats_.find(key);
  return it == stats_.end() ? GraphStats{} : it->second;
}

std::vector<int> GraphRunner::keys() const {
  std::vector<int> out;
  for (const auto& [key, g] : graphs_) out.push_back(key);
  return out;
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

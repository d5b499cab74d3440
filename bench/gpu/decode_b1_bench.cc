// nc_gpu_bench decode-b1 [config.json ...] (also the last part of `decode`): one request's decode
// step (batch 1) of a whole model at the config's shape (random weights, CUDA graphs, greedy
// draws on the device) against its weight-read floor (the weights' bytes at the device-to-device
// copy rate measured in the same run), with the kernels a step (counted from the batch-1 graph:
// cudaGraphGetNodes) and the programmatic (PDL) edges in it, for PDL on and off and fusion on and
// off (NC_PDL, NC_FUSE: cuda_backend.h). Defaults: configs/qwen3-0.6b.json and
// configs/llama-3-8b.json (from the working directory, as gemm-decode), a 512-token context.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_util.h"
#include "model/llama.h"
#include "model/model_loader.h"

namespace nc {
namespace {

struct B1Result {
  double step_s = 0;
  double weight_gb = 0;
  CudaGraphStats graph;
};

// Prefills `ctx` tokens in one step, then times `steps` single-token decodes (forward_sample:
// the draw and its copy to the host included, as a serving loop waits for each token).
B1Result run_b1(const ModelConfig& cfg, bool fuse, bool pdl, int ctx, int steps) {
  cuda_set_pdl(pdl);
  CudaBackendOptions opt;
  opt.fuse_small_ops = fuse;
  std::unique_ptr<Backend> be = make_cuda_backend(0, opt);
  LlamaModel model(cfg, RandomWeights{1}, *be);
  model.set_graph_options(GraphOptions{true, 1});
  const int page_size = 16, pages = (ctx + steps + page_size) / page_size + 1;
  KVCache kv = model.make_kv_cache(pages, page_size, KVLayout::NHD);
  model.reserve_workspace(ctx, 1);
  std::vector<int32_t> page_ids;
  for (int p = 0; p < pages; ++p) page_ids.push_back(p);
  auto step = [&](const std::vector<int32_t>& toks, int start) {
    ForwardInput in;
    const int n = int(toks.size());
    in.token_ids = toks;
    for (int i = 0; i < n; ++i) in.positions.push_back(start + i);
    in.logit_rows = {n - 1};
    PagedKVBatch b;
    const int len = start + n, used = (len + page_size - 1) / page_size;
    b.add(n, std::vector<int32_t>(page_ids.begin(), page_ids.begin() + used), len, page_size);
    in.attention.num_tokens = n;
    in.attention.levels = {b};
    return model.forward_sample(in, kv, {RowSampling{}})[0];
  };
  std::vector<int32_t> prompt(static_cast<size_t>(ctx));
  for (int i = 0; i < ctx; ++i) prompt[size_t(i)] = int32_t((i * 7919) % cfg.vocab_size);
  int32_t tok = step(prompt, 0);
  int pos = ctx;
  for (int i = 0; i < 3; ++i) tok = step({tok}, pos++);  // capture the graph, warm up
  cuda_synchronize(*be);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) tok = step({tok}, pos++);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  B1Result r;
  r.step_s = s / steps;
  r.weight_gb = double(model.weight_bytes()) / 1e9;
  const std::vector<int> keys = cuda_graph_keys(*be);
  if (!keys.empty()) r.graph = cuda_graph_stats(*be, keys.front());
  return r;
}

}  // namespace

void bench_decode_b1(std::vector<std::string> configs) {
  if (configs.empty()) configs = {"configs/qwen3-0.6b.json", "configs/llama-3-8b.json"};
  const bool pdl_default = cuda_pdl_enabled();
  // Fusion is off by default until measured (cuda_fused.h): the "on" rows need the environment's
  // leave; "off" comes from CudaBackendOptions::fuse_small_ops.
  setenv("NC_FUSE", "1", 0);
  double tbs = 0;
  {
    std::unique_ptr<Backend> be = make_cuda_backend(0);
    tbs = bench::copy_tbs(*be);
  }
  std::printf(
      "\n== batch-1 decode step (random weights, graphs, 512-token context); copy rate "
      "%.2f TB/s ==\n",
      tbs);
  std::printf(
      "| config | weights GB | floor ms | fuse | PDL | ms/token | x floor | kernels/step "
      "| kernels/layer | PDL edges |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (const std::string& path : configs) {
    if (!std::filesystem::exists(path)) {
      std::printf("| %s | (not found) |\n", path.c_str());
      continue;
    }
    const ModelConfig cfg = load_model_config(path);
    for (bool fuse : {true, false})
      for (bool pdl : {true, false}) {
        const B1Result r = run_b1(cfg, fuse, pdl, 512, 200);
        const double floor_ms = r.weight_gb / tbs;  // GB / (TB/s) = ms
        std::printf("| %s | %.3f | %.3f | %s | %s | %.3f | %.2f | %d | %.1f | %d |\n",
                    std::filesystem::path(path).filename().c_str(), r.weight_gb, floor_ms,
                    fuse ? "on" : "off", pdl ? "on" : "off", r.step_s * 1e3,
                    r.step_s * 1e3 / floor_ms, r.graph.kernels,
                    double(r.graph.kernels) / double(cfg.num_layers), r.graph.programmatic_edges);
        std::fflush(stdout);
      }
  }
  cuda_set_pdl(pdl_default);
}

}  // namespace nc

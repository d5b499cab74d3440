// nc_gpu_bench decode-b1 [config.json ...] (also the last part of `decode`): one request's decode
// step (batch 1) of a whole model at the config's shape (random weights, CUDA graphs, greedy
// draws on the device) against its weight-read floor (the weights' bytes at the device-to-device
// copy rate measured in the same run), with the kernels a step (counted from the batch-1 graph:
// cudaGraphGetNodes) and the programmatic (PDL) edges in it, for PDL on and off and fusion on and
// off (NC_PDL, NC_FUSE: cuda_backend.h) and the whole-layer kernel on and off
// (CudaBackendOptions::decode_layer: cuda_decode_layer.h). Defaults: configs/qwen3-0.6b.json and
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
  std::vector<uint64_t> trace;  // the whole-layer kernel's (NC_DECODE_LAYER_TRACE=1)
};

// The trace's intervals (us, averaged over the launches after the first `skip`): each stage and
// barrier as block 0 saw it, and the gap from one launch's end to the next one's start.
void print_trace(const std::vector<uint64_t>& t, int layers) {
  constexpr int S = 11;
  const size_t n = t.empty() ? 0 : size_t(t[0]);
  if (n < size_t(4 * layers) || t.size() < 1 + n * S) return;
  static const char* names[] = {"to the PDL wait",
                                "S1 qkv",
                                "barrier 1",
                                "S2 attention",
                                "barrier 2",
                                "S3 o",
                                "barrier 3",
                                "S4 gate/up",
                                "barrier 4",
                                "S5 down",
                                "gap to the next launch"};
  double sum[S] = {};
  size_t count = 0, gaps = 0;
  for (size_t i = n / 2; i < n; ++i) {  // the second half: warm, captured launches
    const uint64_t* st = &t[1 + i * S];
    for (int k = 0; k + 1 < S; ++k) sum[k] += double(st[k + 1] - st[k]) * 1e-3;
    ++count;
    if (i + 1 < n && (i + 1) % size_t(layers) != 0) {  // the next layer of the same step
      // Signed: with PDL the next launch may start before this one's last stamp.
      sum[S - 1] += double(int64_t(t[1 + (i + 1) * S] - st[S - 1])) * 1e-3;
      ++gaps;
    }
  }
  std::printf("  block 0's view, us a layer:");
  for (int k = 0; k < S; ++k)
    std::printf(" %s %.2f;", names[k],
                sum[k] / double(k + 1 < S ? count : std::max<size_t>(gaps, 1)));
  std::printf("\n");
}

// Prefills `ctx` tokens in one step, then times `steps` single-token decodes (forward_sample:
// the draw and its copy to the host included, as a serving loop waits for each token).
B1Result run_b1(const ModelConfig& cfg, bool fuse, bool layer, bool pdl, int ctx, int steps,
                bool trace = false) {
  cuda_set_pdl(pdl);
  if (trace) setenv("NC_DECODE_LAYER_TRACE", "1", 1);
  CudaBackendOptions opt;
  opt.fuse_small_ops = fuse;
  opt.decode_layer = layer ? DecodeLayerMode::On : DecodeLayerMode::Off;
  std::unique_ptr<Backend> be = make_cuda_backend(0, opt);
  unsetenv("NC_DECODE_LAYER_TRACE");
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
  if (trace) r.trace = cuda_decode_layer_trace(*be);
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
      "| config | weights GB | floor ms | layer kernel | fuse | PDL | ms/token | x floor "
      "| kernels/step | kernels/layer | PDL edges "
      "|\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const std::string& path : configs) {
    if (!std::filesystem::exists(path)) {
      std::printf("| %s | (not found) |\n", path.c_str());
      continue;
    }
    const ModelConfig cfg = load_model_config(path);
    struct Row {
      bool layer, fuse, pdl;
    };
    for (const Row& row :
         {Row{true, false, true}, Row{true, false, false}, Row{false, true, true},
          Row{false, true, false}, Row{false, false, true}, Row{false, false, false}}) {
      {
        const bool fuse = row.fuse, pdl = row.pdl;
        const B1Result r = run_b1(cfg, fuse, row.layer, pdl, 512, 200);
        const double floor_ms = r.weight_gb / tbs;  // GB / (TB/s) = ms
        std::printf("| %s | %.3f | %.3f | %s | %s | %s | %.3f | %.2f | %d | %.1f | %d |\n",
                    std::filesystem::path(path).filename().c_str(), r.weight_gb, floor_ms,
                    row.layer ? "on" : "off", fuse ? "on" : "off", pdl ? "on" : "off",
                    r.step_s * 1e3, r.step_s * 1e3 / floor_ms, r.graph.kernels,
                    double(r.graph.kernels) / double(cfg.num_layers), r.graph.programmatic_edges);
        std::fflush(stdout);
      }
    }
    // The layer kernel traced, with its L2 prefetches (flags 0) and without (4)
    // (decode_layer_kernels.h; 1-3, the next layer's weights and bulk prefetches, were measured
    // slower in stop 17).
    for (const char* flags : {"0", "4"}) {
      setenv("NC_DECODE_LAYER_FLAGS", flags, 1);
      const B1Result traced = run_b1(cfg, false, true, true, 512, 100, /*trace=*/true);
      std::printf("| %s | traced run, flags %s: %.3f ms/token |\n",
                  std::filesystem::path(path).filename().c_str(), flags, traced.step_s * 1e3);
      print_trace(traced.trace, int(cfg.num_layers));
    }
    unsetenv("NC_DECODE_LAYER_FLAGS");
  }
  cuda_set_pdl(pdl_default);
}

}  // namespace nc

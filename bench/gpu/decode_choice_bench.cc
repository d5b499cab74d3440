// nc_gpu_bench decode-choice: one paged decode step (one query row per request, head_dim 128, page
// 16, NHD, pages shuffled over the pool) timed with each decode kernel forced (FlashInfer's
// CUDA-core decode; its FA2 prefill kernel with one row per entry, "tensor cores"), per GQA shape,
// batch and context, as a fraction of the device-to-device copy measured in the same process.
// It also prints what DecodeKernel::Auto picks there (decode_choice.cc's table) and the rules
// the measurement suggests for that table, ready to paste. CSV: $OUT/decode_choice.csv.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "bench_util.h"

namespace nc {
namespace {

constexpr int kHeadDim = 128, kPage = 16;
constexpr double kMaxPoolBytes = 30e9;
const int kBatches[] = {1, 16, 64, 128, 256};
const int kContexts[] = {512, 2048, 8192};

struct Heads {
  int hq, hk;
  const char* note;
};
const Heads kHeads[] = {{32, 32, "MHA"},
                        {32, 16, "group 2"},
                        {16, 8, "Qwen3-0.6B"},
                        {32, 8, "Llama-3-8B"},
                        {32, 4, "group 8"}};

double kv_bytes(const Heads& h, int batch, int ctx) {
  return double(batch) * ctx * 2.0 * h.hk * kHeadDim * 2.0;
}

struct Cell {
  Heads heads;
  int batch, ctx;
  double cc_us, tc_us;
  double graph_cc_us,
      graph_tc_us;  // graph-safe plans (FlashInfer's CUDA-graph mode), timed eagerly
  bool auto_cc;
};

// Every (batch, context) cell of one head shape over one pool.
void run_heads(const Heads& h, double copy, std::vector<Cell>& cells, std::FILE* csv) {
  int num_pages = 0;
  for (int b : kBatches)
    for (int c : kContexts)
      if (kv_bytes(h, b, c) <= kMaxPoolBytes) num_pages = std::max(num_pages, b * (c / kPage));
  CudaBackendOptions cc_opt, tc_opt;
  cc_opt.decode_kernel = DecodeKernel::CudaCores;
  tc_opt.decode_kernel = DecodeKernel::TensorCores;
  auto cc = make_cuda_backend(0, cc_opt), tc = make_cuda_backend(0, tc_opt);
  auto au = make_cuda_backend(0, CudaBackendOptions{});
  std::mt19937 rng(7);
  const int64_t page_elems = int64_t(2) * kPage * h.hk * kHeadDim;
  Tensor pool = cc->alloc({num_pages, page_elems}, DType::BF16);
  bench::fill_random_rows(*cc, pool, 256, rng);
  std::vector<int32_t> perm(size_t(num_pages), 0);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  const int max_b = kBatches[std::size(kBatches) - 1];
  Tensor q = cc->upload(bench::random_host({max_b, h.hq * kHeadDim}, rng));
  Tensor k = cc->upload(bench::random_host({max_b, h.hk * kHeadDim}, rng));
  Tensor v = cc->upload(bench::random_host({max_b, h.hk * kHeadDim}, rng));
  Tensor out = cc->alloc({max_b, h.hq * kHeadDim}, DType::BF16);
  cuda_synchronize(*cc);
  for (int batch : kBatches) {
    for (int ctx : kContexts) {
      const double bytes = kv_bytes(h, batch, ctx);
      if (bytes > kMaxPoolBytes) continue;
      AttentionShape shape{h.hq, h.hk, kHeadDim, 1.0f / std::sqrt(float(kHeadDim)),
                           KVCacheShape{1, num_pages, kPage, h.hk, kHeadDim, KVLayout::NHD}};
      const AttentionStep step = bench::decode_step(batch, ctx, perm, kPage);
      const Tensor qb = q.slice(0, batch), kb = k.slice(0, batch), vb = v.slice(0, batch),
                   ob = out.slice(0, batch);
      auto time_on = [&](Backend& be, bool graph_plan = false) {
        auto plan = graph_plan ? be.plan_attention_graph(step, shape, 0, ctx / kPage)
                               : be.plan_attention(step, shape);
        if (!plan) return 0.0;
        const double s =
            bench::auto_seconds_per_call(be, [&] { be.attention(*plan, qb, kb, vb, pool, ob); });
        cuda_synchronize(be);
        return s * 1e6;
      };
      Cell c{h,    batch, ctx, time_on(*cc), time_on(*tc), time_on(*cc, true), time_on(*tc, true),
             false};
      c.auto_cc = cuda_plan_uses_decode_kernel(*au->plan_attention(step, shape))[0];
      auto frac = [&](double us) { return us > 0 ? bytes / (us * 1e-6) / 1e12 / copy : 0.0; };
      const double best = std::min(c.cc_us, c.tc_us), picked = c.auto_cc ? c.cc_us : c.tc_us;
      std::printf(
          "| %d/%d %s | %d | %d | %d | %.3f | %.1f (%.2f) | %.1f (%.2f) | %s | %s | %.2f | %.1f "
          "(%.2f) | %.1f (%.2f) |\n",
          h.hq, h.hk, h.note, h.hq / h.hk, batch, ctx, bytes / 1e9, c.cc_us, frac(c.cc_us), c.tc_us,
          frac(c.tc_us), c.cc_us <= c.tc_us ? "cc" : "tc", c.auto_cc ? "cc" : "tc", picked / best,
          c.graph_cc_us, frac(c.graph_cc_us), c.graph_tc_us, frac(c.graph_tc_us));
      std::fflush(stdout);
      if (csv)
        std::fprintf(csv, "%d,%d,%d,%d,%d,%.0f,%.3f,%.3f,%.3f,%.3f,%s\n", h.hq, h.hk, h.hq / h.hk,
                     batch, ctx, bytes, c.cc_us, c.tc_us, c.graph_cc_us, c.graph_tc_us,
                     c.auto_cc ? "cc" : "tc");
      cells.push_back(c);
    }
  }
  cuda_synchronize(*cc);
}

// The (inclusive) range a measured point stands for: up to halfway to its neighbours.
std::pair<int, int> range_of(const int* points, size_t n, size_t i) {
  const int lo = i == 0 ? 0 : (points[i - 1] + points[i]) / 2 + 1;
  const int hi = i + 1 == n ? 0 : (points[i] + points[i + 1]) / 2;
  return {lo, hi};
}

// Per GQA group (times summed over the head shapes of that group), the cells where tensor cores
// win by more than 3%, as kDecodeRules rows; everything else falls to CUDA cores.
void print_suggested_rules(const std::vector<Cell>& cells) {
  std::map<std::tuple<int, int, int>, std::pair<double, double>> sum;  // (group, b, ctx) -> cc, tc
  for (const Cell& c : cells) {
    auto& s = sum[{c.heads.hq / c.heads.hk, c.batch, c.ctx}];
    s.first += c.cc_us;
    s.second += c.tc_us;
  }
  std::printf(
      "\nSuggested kDecodeRules (src/backend/cuda/decode_choice.cc), head_dim 128; keep a\n"
      "head_dim-0 row after them for other head dims:\n");
  const size_t nb = std::size(kBatches), nc = std::size(kContexts);
  for (const auto& [key, s] : sum) {
    const auto [group, batch, ctx] = key;
    if (s.second >= s.first * 0.97) continue;
    const size_t bi = size_t(std::find(kBatches, kBatches + nb, batch) - kBatches);
    const size_t ci = size_t(std::find(kContexts, kContexts + nc, ctx) - kContexts);
    const auto [b_lo, b_hi] = range_of(kBatches, nb, bi);
    const auto [c_lo, c_hi] = range_of(kContexts, nc, ci);
    std::printf("    {%d, %d, 128, %d, %d, %d, %d, DecodeKernel::TensorCores},  // %.2fx\n", group,
                group, b_lo, b_hi, c_lo, c_hi, s.first / s.second);
  }
  // Graphs: by (group, batch) over all contexts, graph-mode plans on both kernels.
  std::map<std::pair<int, int>, std::pair<double, double>> gsum;
  for (const Cell& c : cells) {
    if (c.graph_cc_us <= 0 || c.graph_tc_us <= 0) continue;
    auto& s = gsum[{c.heads.hq / c.heads.hk, c.batch}];
    s.first += c.graph_cc_us;
    s.second += c.graph_tc_us;
  }
  std::printf("\nSuggested kGraphDecodeRules (same file; contexts summed):\n");
  for (const auto& [key, s] : gsum) {
    if (s.second >= s.first * 0.97) continue;
    const size_t bi = size_t(std::find(kBatches, kBatches + nb, key.second) - kBatches);
    const auto [b_lo, b_hi] = range_of(kBatches, nb, bi);
    std::printf("    {%d, %d, 128, %d, %d, 0, 0, DecodeKernel::TensorCores},  // %.2fx\n",
                key.first, key.first, b_lo, b_hi, s.first / s.second);
  }
}

}  // namespace

void bench_decode_choice() {
  double copy = 0;
  {
    auto be = make_cuda_backend(0);
    copy = bench::copy_tbs(*be);
  }
  std::printf(
      "\n## Decode kernel choice: head_dim 128, page 16, NHD, bf16; copy %.3f TB/s (read + "
      "written); fraction = K/V bytes / time / copy; cc = CUDA-core decode, tc = tensor-core "
      "(prefill kernel, one row per entry); Auto = decode_choice.cc's pick; regret = Auto's time / "
      "best; graph cc / graph tc = the graph-safe plans the engine's decode steps replay, on each "
      "kernel (FlashInfer's CUDA-graph mode, timed eagerly; Auto there follows kGraphDecodeRules, "
      "default cc; 0 = no graph plan); pools over 30 GB skipped\n",
      copy);
  std::printf(
      "| heads | group | batch | context | K/V (GB) | cc us (fraction) | tc us (fraction) | best | "
      "Auto | regret | graph cc us (fraction) | graph tc us (fraction) |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::FILE* csv = bench::open_csv(
      "decode_choice.csv",
      "hq,hk,group,batch,context,kv_bytes,cc_us,tc_us,graph_cc_us,graph_tc_us,auto");
  std::vector<Cell> cells;
  for (const Heads& h : kHeads) run_heads(h, copy, cells, csv);
  if (csv) std::fclose(csv);
  print_suggested_rules(cells);
}

}  // namespace nc

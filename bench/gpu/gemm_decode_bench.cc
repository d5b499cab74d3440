// nc_gpu_bench gemm-decode [config.json ...]: the projections of each model config (default
// configs/qwen3-0.6b.json and configs/llama-3-8b.json: qkv, o, gate_up, down, lm_head with float32
// output) at decode batch sizes (rows = 1, 16, 64, 128, 256), every GEMM candidate of the CUDA
// backend's linear (cuda_gemm.h) timed. Weight bytes / time as a fraction of the device-to-device
// copy rate measured in the same process; the weights rotate over copies spanning at least
// 512 MB, so that no read hits the L2 cache, as in a decode step. Columns: (a) the heuristic's
// pick (what an untuned plan runs), (b) the best of the heuristic's top-N, (c) the best split-K
// variant, (d) the GEMV kernel (rows <= 16), then what the tuner picked at first use.
// CSV: $OUT/gemm_decode.csv (one line per candidate).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_gemm.h"
#include "bench_util.h"
#include "model/model_loader.h"

namespace nc {
namespace {

constexpr double kRotateBytes = 512e6;
const int kRows[] = {1, 16, 64, 128, 256};

struct Proj {
  const char* name;
  int64_t m, k;
  bool f32_out;
};

std::vector<Proj> projections(const ModelConfig& c) {
  const int64_t H = c.hidden_size, D = c.head_dim, I = c.intermediate_size;
  return {{"qkv", (c.num_heads + 2 * c.num_kv_heads) * D, H, false},
          {"o", H, c.num_heads * D, false},
          {"gate_up", 2 * I, H, false},
          {"down", H, I, false},
          {"lm_head", c.vocab_size, H, true}};
}

struct Best {
  double us = 0;
  std::string name = "-";
  void offer(double t, const std::string& n) {
    if (us == 0 || t < us) us = t, name = n;
  }
};

std::string cell(const Best& b, double bytes, double copy, bool with_name) {
  if (b.us == 0) return "-";
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%.1f (%.2f)%s%s", b.us, bytes / (b.us * 1e-6) / 1e12 / copy,
                with_name ? " " : "", with_name ? b.name.c_str() : "");
  return buf;
}

void bench_shape(Backend& be, const std::string& model, const Proj& p,
                 const std::vector<Tensor>& ws, double copy, std::mt19937& rng, std::FILE* csv) {
  cuda_host::CublasLtGemm& gemm = cuda_host::cuda_gemm(be);
  const double bytes = double(p.m) * p.k * 2;
  for (int n : kRows) {
    Tensor x = be.upload(bench::random_host({n, p.k}, rng));
    Tensor out = be.alloc({n, p.m}, p.f32_out ? DType::F32 : DType::BF16);
    const std::vector<std::string> names = gemm.candidate_names(x, ws[0], Tensor(), out);
    Best heur, lt, split, gemv;
    for (size_t i = 0; i < names.size(); ++i) {
      size_t r = 0;
      const double us = 1e6 * bench::auto_seconds_per_call(be, [&] {
                          gemm.run_candidate(i, x, ws[r], Tensor(), out);
                          r = (r + 1) % ws.size();
                        });
      const bool is_split = names[i].find("splitk=") != std::string::npos &&
                            names[i].find("splitk=1") == std::string::npos;
      if (i == 0) heur.offer(us, names[i]);
      if (names[i] == "gemv")
        gemv.offer(us, names[i]);
      else if (is_split)
        split.offer(us, names[i]);
      else
        lt.offer(us, names[i]);
      if (csv)
        std::fprintf(csv, "%s,%s,%d,%ld,%ld,%zu,\"%s\",%.3f,%.4f\n", model.c_str(), p.name, n,
                     long(p.k), long(p.m), i, names[i].c_str(), us,
                     bytes / (us * 1e-6) / 1e12 / copy);
    }
    // The tuner: linear() at first use times the candidates and keeps one.
    be.linear(x, ws[0], Tensor(), out);
    const int pick = gemm.chosen(x, ws[0], Tensor(), out);
    Best tuned;
    if (pick >= 0) {
      size_t r = 0;
      tuned.offer(1e6 * bench::auto_seconds_per_call(be,
                                                     [&] {
                                                       be.linear(x, ws[r], Tensor(), out);
                                                       r = (r + 1) % ws.size();
                                                     }),
                  names[size_t(pick)]);
    }
    std::printf("| %s %s | %d | %ld | %ld | %.1f | %zu | %s | %s | %s | %s | %s |\n", model.c_str(),
                p.name, n, long(p.k), long(p.m), bytes / 1e6, names.size(),
                cell(heur, bytes, copy, false).c_str(), cell(lt, bytes, copy, true).c_str(),
                cell(split, bytes, copy, true).c_str(), cell(gemv, bytes, copy, false).c_str(),
                cell(tuned, bytes, copy, true).c_str());
    std::fflush(stdout);
  }
}

void bench_model(const std::string& path, double copy, std::FILE* csv) {
  const ModelConfig cfg = load_model_config(path);
  std::string model = path.substr(path.find_last_of('/') + 1);
  model = model.substr(0, model.rfind(".json"));
  std::mt19937 rng(13);
  for (const Proj& p : projections(cfg)) {
    auto be = make_cuda_backend(0);
    const double bytes = double(p.m) * p.k * 2;
    const int copies = std::clamp(int(kRotateBytes / bytes + 0.999), 1, 256);
    std::vector<Tensor> ws;
    ws.push_back(be->alloc({p.m, p.k}, DType::BF16));
    bench::fill_random_rows(*be, ws[0], 512, rng, 0.02f);
    for (int i = 1; i < copies; ++i) {
      ws.push_back(be->alloc({p.m, p.k}, DType::BF16));
      be->copy_rows(ws[0], ws.back());
    }
    bench_shape(*be, model, p, ws, copy, rng, csv);
    cuda_synchronize(*be);
  }
}

}  // namespace

void bench_gemm_decode(std::vector<std::string> configs) {
  if (configs.empty()) configs = {"configs/qwen3-0.6b.json", "configs/llama-3-8b.json"};
  // The "tuned" column tunes afresh unless NC_GEMM_CACHE names a folder (no earlier run's file).
  setenv("NC_GEMM_CACHE", "off", 0);
  double copy = 0;
  {
    auto be = make_cuda_backend(0);
    copy = bench::copy_tbs(*be);
  }
  std::printf(
      "\n## Decode-batch GEMMs: out[rows, M] = x[rows, K] @ w[M, K]^T, bf16, f32 accumulate "
      "(lm_head: f32 out); copy %.3f TB/s (read + written); each cell: us (weight bytes / time / "
      "copy; target >= 0.85); heuristic = cuBLASLt's first pick (untuned); best lt = best of its "
      "top-N; split-K = best split-K variant; gemv = our kernel; tuned = linear() after tuning\n",
      copy);
  std::printf(
      "| shape | rows | K | M | weights (MB) | candidates | heuristic | best lt | split-K | gemv | "
      "tuned |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::FILE* csv =
      bench::open_csv("gemm_decode.csv", "model,proj,rows,k,m,candidate,name,us,fraction_of_copy");
  for (const std::string& path : configs) bench_model(path, copy, csv);
  if (csv) std::fclose(csv);
}

}  // namespace nc

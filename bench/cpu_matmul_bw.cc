// cpu_matmul's throughput in GB/s of weights read, on SmolLM2-135M's shapes (a 1536 x 576 MLP
// projection and the 49152 x 576 tied lm_head) in the default model's formats (Q4_1, Q8_0), at
// N = 1, 8 and 32 x rows, beside the bandwidth of a plain memcpy measured in the same run (bytes
// read per second). Threads: NC_NUM_THREADS (or the hardware); path: NC_CPU_ISA (or the best).
// Then one decode step's matmuls of the whole model (see model_step). Activations:
// NC_CPU_ACTIVATIONS (int8, int16 or f32; cpu_matmul.h). `--step-only`: the model step alone.
// A plain program (no Google Benchmark) so that a static build runs on any x86-64 machine:
//   NC_NUM_THREADS=2 ./build/bench/nc_cpu_matmul_bw
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_matmul.h"
#include "core/thread_pool.h"

namespace {

using Clock = std::chrono::steady_clock;

double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Seconds per call: the best wall time of `reps` batches of calls (each at least 50 ms), and the
// process CPU time per call of that batch (with one thread: the cost of the work itself, whatever
// else the machine runs; with more it includes the pool's spinning).
struct Timing {
  double wall = 1e30, cpu = 0;
};
template <typename F>
Timing best_seconds(F call, int reps = 5) {
  call();  // warm-up
  Timing best;
  for (int r = 0; r < reps; ++r) {
    int calls = 0;
    const auto t0 = Clock::now();
    const double c0 = cpu_seconds();
    double s = 0;
    do {
      call();
      ++calls;
      s = std::chrono::duration<double>(Clock::now() - t0).count();
    } while (s < 0.05);
    if (s / calls < best.wall) best = {s / calls, (cpu_seconds() - c0) / calls};
  }
  return best;
}

double memcpy_gbs() {
  const size_t bytes = size_t(256) << 20;
  std::vector<uint8_t> a(bytes, 1), b(bytes, 2);
  const Timing t = best_seconds([&] {
    std::memcpy(b.data(), a.data(), bytes);
    asm volatile("" : : "r"(b.data()) : "memory");
  });
  return double(bytes) / t.wall / 1e9;
}

std::vector<uint8_t> random_blocks(nc::DType t, int64_t M, int64_t K, uint64_t seed) {
  std::vector<uint8_t> w(nc::dtype_bytes(t, K) * size_t(M));
  for (auto& v : w) {  // xorshift: fast enough for the ~100 MB of a whole model
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    v = uint8_t(seed);
  }
  for (size_t off = 0; off < w.size(); off += nc::dtype_block_bytes(t))
    w[off] = 0, w[off + 1] = 0x20;
  return w;
}

Timing matmul_time(nc::DType t, int64_t M, int64_t K, int64_t N, nc::ThreadPool& pool,
                   double* bytes) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> w(nc::dtype_bytes(t, K) * size_t(M));
  for (auto& v : w) v = uint8_t(byte(rng));
  // Sane f16 scales (0x2000 ~ 0.0078) first in every block (the Q4_1 and Q8_0 layouts).
  for (size_t off = 0; off < w.size(); off += nc::dtype_block_bytes(t))
    w[off] = 0, w[off + 1] = 0x20;
  std::vector<float> x(size_t(N * K)), out(size_t(N * M));
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(rng);
  const nc::CpuWeightView view{t, M, K, w.data()};
  *bytes = double(w.size());
  return best_seconds([&] { nc::cpu_matmul(x.data(), N, view, out.data(), pool); });
}

// One decode step's matmuls of SmolLM2-135M as the default GGUF stores it (30 layers of Q4_1
// q/k/v/o/gate/up/down, the Q8_0 tied lm_head), every matrix its own memory (about 95 MB, more
// than the caches, as in the engine); tokens/s counts matmuls only.
void model_step(nc::ThreadPool& pool, double copy_gbs) {
  struct Mat {
    int64_t M, K;
    nc::DType t;
  };
  const Mat layer[] = {{576, 576, nc::DType::Q4_1},  {192, 576, nc::DType::Q4_1},
                       {192, 576, nc::DType::Q4_1},  {576, 576, nc::DType::Q4_1},
                       {1536, 576, nc::DType::Q4_1}, {1536, 576, nc::DType::Q4_1},
                       {576, 1536, nc::DType::Q4_1}};
  std::vector<Mat> mats;
  for (int l = 0; l < 30; ++l) mats.insert(mats.end(), std::begin(layer), std::end(layer));
  mats.push_back({49152, 576, nc::DType::Q8_0});
  std::vector<std::vector<uint8_t>> ws;
  double bytes = 0;
  for (size_t i = 0; i < mats.size(); ++i) {
    ws.push_back(random_blocks(mats[i].t, mats[i].M, mats[i].K, 88172645463325252ull + i));
    bytes += double(ws.back().size());
  }
  for (int64_t N : {1, 8, 32, 128}) {  // 128: a prompt's step (the lm_head included)
    std::vector<float> x(size_t(N * 1536), 0.5f), out(size_t(N * 49152));
    const Timing tm = best_seconds(
        [&] {
          for (size_t i = 0; i < mats.size(); ++i)
            nc::cpu_matmul(x.data(), N, {mats[i].t, mats[i].M, mats[i].K, ws[i].data()}, out.data(),
                           pool);
        },
        3);
    std::printf(
        "SmolLM2-135M step N=%-3lld %8.2f ms (%.2f ms CPU) %7.1f tokens/s (matmuls only), "
        "%.2f GB/s of weights = %.2fx memcpy\n",
        (long long)N, tm.wall * 1e3, tm.cpu * 1e3, double(N) / tm.wall, bytes / tm.wall / 1e9,
        bytes / tm.wall / 1e9 / copy_gbs);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool step_only = argc > 1 && std::string(argv[1]) == "--step-only";
  nc::ThreadPool& pool = nc::ThreadPool::global();
  std::printf("threads %d, path %s, activations %s\n", pool.size(),
              nc::cpu_isa_name(nc::cpu_isa_active()),
              nc::cpu_activations_name(nc::cpu_activations_active()));
  const Timing pf = best_seconds([&] { pool.parallel_for(pool.size(), [](int64_t, int64_t) {}); });
  std::printf("parallel_for round trip   %7.2f us (an empty job on every thread)\n", pf.wall * 1e6);
  const double copy = memcpy_gbs();
  std::printf("memcpy (256 MiB)          %7.2f GB/s read\n", copy);
  for (nc::DType t : {nc::DType::Q4_1, nc::DType::Q8_0})
    for (int64_t M : {1536, 49152})
      if (!step_only)
        for (int64_t N : {1, 8, 32}) {
          double bytes = 0;
          const Timing tm = matmul_time(t, M, 576, N, pool, &bytes);
          const double g = bytes / tm.wall / 1e9;
          std::printf(
              "%-5s M=%-6lld K=576 N=%-3lld %8.1f us %7.2f GB/s of weights (%.2fx memcpy), "
              "%.2f GB per CPU-second\n",
              std::string(nc::dtype_name(t)).c_str(), (long long)M, (long long)N, tm.wall * 1e6, g,
              g / copy, bytes / tm.cpu / 1e9);
        }
  model_step(pool, copy);
  return 0;
}

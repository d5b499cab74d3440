// cpu_matmul's throughput in GB/s of weights read (SmolLM2-135M's shapes: a 1536 x 576 MLP
// projection and the 49152 x 576 tied lm_head, in the default model's Q4_1 and Q8_0), beside a
// plain memcpy of a buffer larger than the caches, in the same run. Threads: NC_NUM_THREADS (or
// the hardware); the path: NC_CPU_ISA (or the best the CPU has).
//   nc_bench --benchmark_filter='CpuMatmul|Memcpy'
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/cpu_matmul.h"
#include "core/thread_pool.h"

namespace nc {
namespace {

void BM_Memcpy(benchmark::State& state) {
  const size_t bytes = size_t(256) << 20;
  std::vector<uint8_t> a(bytes, 1), b(bytes, 2);
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), bytes);
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  // Bytes read, as for the matmul (a copy also writes as many).
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
}
BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_CpuMatmul(benchmark::State& state) {
  const auto t = DType(state.range(0));
  const int64_t M = state.range(1), K = state.range(2), N = state.range(3);
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> byte(0, 255);
  const size_t row_bytes = dtype_bytes(t, K);
  std::vector<uint8_t> w(row_bytes * size_t(M));
  for (auto& v : w) v = uint8_t(byte(rng));
  // Sane f16 scales (0x2000 ~ 0.0078) at the start of every block (Q4_1 / Q8_0 layouts).
  for (size_t off = 0; off < w.size(); off += dtype_block_bytes(t)) {
    w[off] = 0x00, w[off + 1] = 0x20;
  }
  std::vector<float> x(size_t(N * K)), out(size_t(N * M));
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(rng);
  ThreadPool& pool = ThreadPool::global();
  for (auto _ : state) {
    cpu_matmul(x.data(), N, {t, M, K, w.data()}, out.data(), pool);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(w.size()));
  state.SetLabel(std::string(dtype_name(t)) + " " + cpu_isa_name(cpu_isa_active()) +
                 " threads=" + std::to_string(pool.size()));
}

void matmul_args(benchmark::internal::Benchmark* b) {
  for (DType t : {DType::Q4_1, DType::Q8_0})
    for (int64_t M : {1536, 49152})
      for (int64_t N : {1, 8, 32}) b->Args({int64_t(t), M, 576, N});
}
BENCHMARK(BM_CpuMatmul)->Apply(matmul_args)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace nc

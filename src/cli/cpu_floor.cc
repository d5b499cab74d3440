#include "cli/cpu_floor.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>

namespace nc::cli {

double measure_copy_bandwidth(size_t bytes, int runs) {
  std::unique_ptr<char[]> src(new char[bytes]), dst(new char[bytes]);
  std::memset(src.get(), 1, bytes);  // touch every page before timing
  std::memset(dst.get(), 0, bytes);
  double best = 0;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    std::memcpy(dst.get(), src.get(), bytes);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0) best = std::max(best, 2.0 * double(bytes) / s);
    src[i] = dst[bytes - 1 - i];  // keeps the copies from being optimised away
  }
  return best;
}

std::string cpu_floor_line(const EngineStats& run, double copy_bytes_per_s) {
  const EngineStats::StepKind& dec = run.decode_steps;
  const EngineStats::StepKind& pre = run.prefill_steps;
  std::string line;
  if (dec.steps > 0 && dec.wall_s > 0) {
    line += fmt::format("decode {:.1f} tok/s ({:.2f} ms per step of {:.1f} tokens)",
                        double(dec.tokens) / dec.wall_s, 1e3 * dec.wall_s / double(dec.steps),
                        double(dec.tokens) / double(dec.steps));
  }
  if (pre.steps > 0 && pre.wall_s > 0) {
    line += fmt::format("{}prompt {:.1f} tok/s", line.empty() ? "" : ", ",
                        double(pre.tokens) / pre.wall_s);
  }
  if (copy_bytes_per_s <= 0) return line;
  const double floor_s = double(run.weight_bytes) / copy_bytes_per_s;
  line += fmt::format(
      "{}floor: {:.1f} MiB of weights per step at {:.2f} GB/s copy bandwidth = "
      "{:.2f} ms",
      line.empty() ? "" : "; ", double(run.weight_bytes) / double(1 << 20), copy_bytes_per_s / 1e9,
      1e3 * floor_s);
  if (dec.steps > 0 && dec.wall_s > 0)
    line += fmt::format(", {:.0f}% of the floor reached",
                        100.0 * floor_s / (dec.wall_s / double(dec.steps)));
  return line;
}

}  // namespace nc::cli

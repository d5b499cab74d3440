// The memory-bandwidth floor of decoding on the CPU, for `generate` and `bench`.
//
// A decode step reads every weight once (one row per token of the embedding), so its time is at
// least (weight bytes) / (memory bandwidth). measure_copy_bandwidth() gives the bandwidth of
// this machine now: the best of a few 256 MiB memcpy runs on one thread, counted as bytes read
// plus bytes written (STREAM's "copy" convention). cpu_floor_line() compares a run's decode
// steps with that floor: floor time per step / measured time per step (1.0 = at the floor).
// The weight bytes are the engine's weight_bytes (the weights as stored, with the rope table).
#pragma once
#include <string>

#include "nanocascade/stats.h"

namespace nc::cli {

// Bytes per second (read + written), best of `runs` copies of `bytes` bytes.
double measure_copy_bandwidth(size_t bytes = size_t(256) << 20, int runs = 3);

// "decode 12.3 tok/s (81.2 ms per step of 1.0 tokens), prompt 170.0 tok/s; floor: 100.0 MiB of
// weights per step at 10.0 GB/s copy bandwidth = 10.5 ms, 13% of the floor reached"; the decode
// or prompt part is left out when the run had no such steps.
std::string cpu_floor_line(const EngineStats& run, double copy_bytes_per_s);

}  // namespace nc::cli

// The PDL switch of pdl.h.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include <cuda_runtime.h>

#include "backend/cuda/pdl.h"

namespace nc::cuda {
namespace {

std::atomic<bool>& pdl_switch() {
  static std::atomic<bool> on = [] {
    const char* v = std::getenv("NC_PDL");
    return v == nullptr || *v == '\0' ? kPdlByDefault : std::strcmp(v, "0") != 0;
  }();
  return on;
}

constexpr int kMaxDevices = 64;

// Compute capability major of device d, read once per device (0 where it cannot be read).
int cc_major(int d) {
  static std::atomic<int> cache[kMaxDevices] = {};
  if (d < 0 || d >= kMaxDevices) return 0;
  int v = cache[d].load(std::memory_order_relaxed);
  if (v != 0) return v;
  if (cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, d) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  cache[d].store(v, std::memory_order_relaxed);
  return v;
}

}  // namespace

bool pdl_enabled() {
  if (!pdl_switch().load(std::memory_order_relaxed)) return false;
  int d = 0;
  if (cudaGetDevice(&d) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return cc_major(d) == 9;
}

void set_pdl_enabled(bool on) {
  pdl_switch().store(on, std::memory_order_relaxed);
}

}  // namespace nc::cuda

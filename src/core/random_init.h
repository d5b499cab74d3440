// Seeded random weights ("dummy" load format): a counter-based generator, so element i of a
// tensor has the same value whether it is made on the host or on a GPU, in any order.
#pragma once
#include <cstdint>
#include <string_view>

#if defined(__CUDACC__)
#define NC_HOST_DEVICE __host__ __device__
#else
#define NC_HOST_DEVICE
#endif

namespace nc {

// SplitMix64's finaliser: a bijective 64-bit mix.
NC_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) from 24 random bits (exact in float32).
NC_HOST_DEVICE inline float uniform_hash01(uint64_t seed, uint64_t i) {
  return float(mix64(seed ^ mix64(i)) >> 40) * (1.0f / 16777216.0f);
}

// A tensor's own seed: the model seed mixed with its name (FNV-1a), so each tensor differs and
// none depends on the order tensors are made in.
inline uint64_t tensor_seed(uint64_t model_seed, std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : name) h = (h ^ uint8_t(c)) * 0x100000001b3ull;
  return mix64(model_seed ^ h);
}

}  // namespace nc

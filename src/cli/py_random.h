// Python's `random` module for integer draws (MT19937 seeded like random.seed(int), randint as
// in CPython's _randbelow_with_getrandbits), so `bench` builds exactly nano-vLLM's workload.
#pragma once
#include <bit>
#include <cstdint>

namespace nc::cli {

class PyRandom {
 public:
  explicit PyRandom(uint32_t seed) { seed_by_array(seed); }

  // random.randint(a, b): uniform in [a, b], both ends included.
  int64_t randint(int64_t a, int64_t b) { return a + randbelow(uint64_t(b - a + 1)); }

 private:
  static constexpr int N = 624, M = 397;

  void init_genrand(uint32_t s) {
    mt_[0] = s;
    for (mti_ = 1; mti_ < N; ++mti_) {
      mt_[mti_] = 1812433253u * (mt_[mti_ - 1] ^ (mt_[mti_ - 1] >> 30)) + uint32_t(mti_);
    }
  }

  // init_by_array with the one-word key {seed} (CPython's seed for a small non-negative int).
  void seed_by_array(uint32_t seed) {
    init_genrand(19650218u);
    int i = 1;
    for (int k = N; k; --k) {
      mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + seed;
      if (++i >= N) {
        mt_[0] = mt_[N - 1];
        i = 1;
      }
    }
    for (int k = N - 1; k; --k) {
      mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) - uint32_t(i);
      if (++i >= N) {
        mt_[0] = mt_[N - 1];
        i = 1;
      }
    }
    mt_[0] = 0x80000000u;
  }

  uint32_t next() {
    if (mti_ >= N) {
      for (int k = 0; k < N; ++k) {
        const uint32_t y = (mt_[k] & 0x80000000u) | (mt_[(k + 1) % N] & 0x7fffffffu);
        mt_[k] = mt_[(k + M) % N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
      }
      mti_ = 0;
    }
    uint32_t y = mt_[mti_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
  }

  // getrandbits(k) for k <= 32, then rejection as CPython does.
  uint64_t randbelow(uint64_t n) {
    const int k = 64 - std::countl_zero(n);  // n.bit_length(), n in [1, 2^32]
    for (;;) {
      const uint64_t r = next() >> (32 - k);
      if (r < n) return r;
    }
  }

  uint32_t mt_[N];
  int mti_ = N + 1;
};

}  // namespace nc::cli

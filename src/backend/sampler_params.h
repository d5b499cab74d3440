// The per-row parameters of the CUDA sampler, as its kernels read them (host-only code: no CUDA
// headers, so the CPU test build checks it).
//
// SamplerRow is what sample_rows (ops.cu) and FlashInfer's filters (sampling.cu) take for one
// row; SamplerParamBlock packs the rows of a step into one block that is uploaded in a single
// copy. FlashInfer's softmax, top-k and top-p kernels each take their parameter as its own
// contiguous array, so the block is laid out by column: the seeds first (8-byte aligned), then
// the inverse temperatures, temperatures, top-k, top-p and min-p of all rows (4 bytes each, no
// padding). columns() gives typed pointers into any copy of the block.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "backend/backend.h"

namespace nc::cuda_host {

struct SamplerRow {
  uint64_t seed = 0;
  float inv_temperature = 0;  // 0: argmax
  float temperature = 1;      // greedy rows: 1 (their probabilities are unused; keeps NaN out)
  int32_t top_k = 0;          // vocab: off
  float top_p = 1;            // 1: off
  float min_p = -1;           // < 0: off

  // Unfiltered rows (RowSampling::filtered() false) get no filter: top-k = vocab, top-p = 1,
  // min-p = -1.
  static SamplerRow from(const RowSampling& p, int vocab) {
    const bool f = p.filtered();
    SamplerRow r;
    r.seed = p.seed;
    r.inv_temperature = p.inv_temperature;
    r.temperature = p.inv_temperature == 0 ? 1.0f : 1.0f / p.inv_temperature;
    r.top_k = f && p.top_k > 0 && p.top_k < vocab ? p.top_k : vocab;
    r.top_p = f ? p.top_p : 1.0f;
    r.min_p = f ? p.min_p : -1.0f;
    return r;
  }
};
static_assert(std::is_trivially_copyable_v<SamplerRow>);

// Typed pointers to the columns of one copy of a SamplerParamBlock.
struct SamplerColumns {
  const uint64_t* seed = nullptr;
  const float* inv_temperature = nullptr;
  const float* temperature = nullptr;
  const int32_t* top_k = nullptr;
  const float* top_p = nullptr;
  const float* min_p = nullptr;
};

class SamplerParamBlock {
 public:
  explicit SamplerParamBlock(std::span<const SamplerRow> rows)
      : n_(rows.size()), words_((bytes() + 7) / 8) {
    for (size_t r = 0; r < n_; ++r) {
      const SamplerRow& p = rows[r];
      put(0, r, p.seed);
      put(column(1), r, p.inv_temperature);
      put(column(2), r, p.temperature);
      put(column(3), r, p.top_k);
      put(column(4), r, p.top_p);
      put(column(5), r, p.min_p);
    }
  }
  // 8 bytes of seed and five 4-byte parameters per row.
  static constexpr size_t kRowBytes = sizeof(uint64_t) + 5 * sizeof(float);
  size_t rows() const { return n_; }
  size_t bytes() const { return n_ * kRowBytes; }
  const void* data() const { return words_.data(); }

  SamplerColumns columns(const void* base) const {
    const auto* b = static_cast<const std::byte*>(base);
    return {reinterpret_cast<const uint64_t*>(b),
            reinterpret_cast<const float*>(b + column(1)),
            reinterpret_cast<const float*>(b + column(2)),
            reinterpret_cast<const int32_t*>(b + column(3)),
            reinterpret_cast<const float*>(b + column(4)),
            reinterpret_cast<const float*>(b + column(5))};
  }

 private:
  // Byte offset of column c >= 1 (column 0: the seeds, 8 bytes a row).
  size_t column(size_t c) const { return n_ * 8 + (c - 1) * n_ * 4; }
  template <typename T>
  void put(size_t offset, size_t row, T value) {
    std::memcpy(reinterpret_cast<std::byte*>(words_.data()) + offset + row * sizeof(T), &value,
                sizeof(T));
  }

  size_t n_;
  std::vector<uint64_t> words_;  // 8-byte aligned storage of bytes()
};

}  // namespace nc::cuda_host

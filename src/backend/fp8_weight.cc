// FP8 linear weights (contract: backend/fp8_weight.h).
#include "backend/fp8_weight.h"

#include <atomic>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp8.h"
#include "core/thread_pool.h"

namespace nc {

Fp8Weight quantize_fp8_weight(const HostTensor& w) {
  NC_CHECK(!w.is_raw() && w.shape.size() == 2, "fp8: quantising needs a float32 matrix, got {} {}",
           dtype_name(w.dtype), shape_str(w.shape));
  Fp8Weight q;
  q.rows = w.shape[0], q.cols = w.shape[1];
  q.codes.resize(size_t(q.rows * q.cols));
  q.scales.resize(size_t(q.rows));
  // Rows in parallel (an 8B model's linears are ~7e9 values: minutes on one core at load). A
  // worker must not throw, so a row that is not finite is noted and reported after the loop.
  std::atomic<int64_t> bad_row{-1};
  ThreadPool::global().parallel_for(q.rows, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      const float* row = w.data.data() + m * q.cols;
      float amax = 0;
      for (int64_t k = 0; k < q.cols; ++k) amax = std::max(amax, std::fabs(row[k]));
      if (!std::isfinite(amax)) {
        int64_t none = -1;
        bad_row.compare_exchange_strong(none, m);
        continue;
      }
      const float s = amax > 0 ? amax / kE4M3Max : 1.0f;
      q.scales[size_t(m)] = s;
      for (int64_t k = 0; k < q.cols; ++k)
        q.codes[size_t(m * q.cols + k)] = f32_to_e4m3(row[k] / s);
    }
  });
  NC_CHECK(bad_row.load() < 0, "fp8: row {} of a weight [{}, {}] is not finite", bad_row.load(),
           q.rows, q.cols);
  return q;
}

HostTensor dequantize_fp8_weight(const Fp8Weight& w) {
  HostTensor t{{w.rows, w.cols}, std::vector<float>(size_t(w.rows * w.cols))};
  const float* table = e4m3_table();
  for (int64_t m = 0; m < w.rows; ++m)
    for (int64_t k = 0; k < w.cols; ++k)
      t.data[size_t(m * w.cols + k)] = table[w.codes[size_t(m * w.cols + k)]] * w.scales[size_t(m)];
  return t;
}

void check_fp8_weight(const Fp8Weight& w, const char* what) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, w.rows > 0 && w.cols > 0,
              "{}: fp8 weight has shape [{}, {}]", what, w.rows, w.cols);
  NC_CHECK_AS(ErrorKind::InvalidArgument, int64_t(w.codes.size()) == w.rows * w.cols,
              "{}: fp8 weight [{}, {}] has {} codes", what, w.rows, w.cols, w.codes.size());
  NC_CHECK_AS(ErrorKind::InvalidArgument, int64_t(w.scales.size()) == w.rows,
              "{}: fp8 weight [{}, {}] has {} scales, expected one per row", what, w.rows, w.cols,
              w.scales.size());
  for (size_t m = 0; m < w.scales.size(); ++m)
    NC_CHECK_AS(ErrorKind::InvalidArgument, std::isfinite(w.scales[m]) && w.scales[m] > 0,
                "{}: fp8 weight scale {} of row {} is not a finite positive number", what,
                w.scales[m], m);
  NC_CHECK_AS(ErrorKind::InvalidArgument, std::isfinite(w.input_scale) && w.input_scale >= 0,
              "{}: fp8 input scale {} is not finite and >= 0", what, w.input_scale);
}

int64_t fp8_scales_offset(int64_t rows, int64_t cols) {
  return (rows * cols + 15) / 16 * 16;
}

int64_t fp8_packed_bytes(int64_t rows, int64_t cols) {
  return fp8_scales_offset(rows, cols) + (rows + 1) * int64_t(sizeof(float));
}

std::vector<uint8_t> pack_fp8_weight(const Fp8Weight& w) {
  check_fp8_weight(w, "fp8 pack");
  std::vector<uint8_t> out(size_t(fp8_packed_bytes(w.rows, w.cols)));
  std::memcpy(out.data(), w.codes.data(), w.codes.size());
  uint8_t* s = out.data() + fp8_scales_offset(w.rows, w.cols);
  std::memcpy(s, w.scales.data(), w.scales.size() * sizeof(float));
  std::memcpy(s + w.scales.size() * sizeof(float), &w.input_scale, sizeof(float));
  return out;
}

const float* fp8_row_scales(const Tensor& w) {
  w.expect_dtype(DType::F8E4M3, "fp8 weight");
  NC_CHECK(w.ndim() == 2 && w.is_contiguous(), "fp8 weight: expected a whole [M, K] tensor, got {}",
           shape_str(w.shape()));
  return reinterpret_cast<const float*>(static_cast<const uint8_t*>(w.data()) +
                                        fp8_scales_offset(w.dim(0), w.dim(1)));
}

float fp8_input_scale(const Tensor& w) {
  return fp8_row_scales(w)[w.dim(0)];
}

float fp8_activation_scale(const float* x, int64_t K, float input_scale) {
  if (input_scale > 0) return input_scale;
  float amax = 0;
  for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[k]));
  return amax > 0 ? amax / kE4M3Max : 1.0f;
}

}  // namespace nc

// The portable float-activation kernels: rows decoded by formats/gguf.h's dequantize(), then
// the portable float dot product (eight interleaved partial sums, a fixed pairwise reduction).
#include "backend/cpu/quant_fdot.h"

#include "formats/gguf.h"

namespace nc::qk {
namespace {

template <GgmlType T>
void decode_row(const void* w, int64_t cols, float* out) {
  dequantize(T, static_cast<const uint8_t*>(w), out, cols);
}

float dot(const float* w, const float* x, int64_t cols) {
  float acc[8] = {};
  for (int64_t k = 0; k < cols; ++k) acc[k % 8] += w[k] * x[k];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

void gemm(const float* w, int64_t ldw, int mw, const float* x, int64_t ldx, int nx, int64_t cols,
          float* out, int64_t ldo) {
  for (int r = 0; r < nx; ++r)
    for (int j = 0; j < mw; ++j) out[j + r * ldo] = dot(w + j * ldw, x + r * ldx, cols);
}

FloatActKernels make() {
  FloatActKernels k;
  k.gemm = gemm;
  k.decode[kQ4_0] = decode_row<GgmlType::Q4_0>;
  k.decode[kQ4_1] = decode_row<GgmlType::Q4_1>;
  k.decode[kQ8_0] = decode_row<GgmlType::Q8_0>;
  k.decode[kQ4_K] = decode_row<GgmlType::Q4_K>;
  k.decode[kQ5_K] = decode_row<GgmlType::Q5_K>;
  k.decode[kQ6_K] = decode_row<GgmlType::Q6_K>;
  return k;
}

}  // namespace

const FloatActKernels kPortableFloatKernels = make();

}  // namespace nc::qk

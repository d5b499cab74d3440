// The portable attention row loops (contract: attention_rows.h).
#include "backend/cpu/attention_rows.h"

namespace nc::attn {
namespace {

float dot_fixed(const float* q, const float* k, int D) {
  constexpr int L = 16;
  float acc[L] = {};
  int d = 0;
  for (; d + L <= D; d += L)
    for (int l = 0; l < L; ++l) acc[l] += q[d + l] * k[d + l];
  for (int w = L / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  float dot = acc[0];
  for (; d < D; ++d) dot += q[d] * k[d];
  return dot;
}

void scores(const float* q, const float* k, int64_t stride, int n, int D, float scale, float* s) {
  for (int t = 0; t < n; ++t) s[t] = dot_fixed(q, k + t * stride, D) * scale;
}

void accumulate(const float* p, const float* v, int64_t stride, int n, int D, float* out) {
  for (int t = 0; t < n; ++t)
    for (int d = 0; d < D; ++d) out[d] += p[t] * v[t * stride + d];
}

}  // namespace

const RowKernels kPortableRows = {scores, accumulate};

}  // namespace nc::attn

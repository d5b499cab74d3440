// The two inner loops of CPU attention over one run of keys (the slots of one page), as plain
// function pointers per instruction set (chosen once by cpu_isa.h):
//   scores: s[t] = dot(q, k_t) * scale, the dot product over D values in a fixed order: 16
//           lane-wise partial sums over whole groups of 16, summed pairwise (lane l += lane l + 8,
//           then + 4, + 2, + 1), then the tail one by one;
//   accumulate: out[d] += p[t] * v_t[d] for t in order, per d (a multiply, then an add).
// k_t / v_t start stride elements apart. Every path performs exactly these float operations
// (no fused multiply-add), so the paths agree bit for bit.
//
// Included by the AVX2 translation unit: plain declarations only, no standard-library inlines.
#pragma once
#include <cstdint>

namespace nc::attn {

using ScoresFn = void (*)(const float* q, const float* k, int64_t stride, int n, int D, float scale,
                          float* s);
using AccumulateFn = void (*)(const float* p, const float* v, int64_t stride, int n, int D,
                              float* out);

struct RowKernels {
  ScoresFn scores;
  AccumulateFn accumulate;
};

extern const RowKernels kPortableRows;  // attention_rows.cc
// The AVX2 versions (attention_rows_avx2.cc); callable only where cpu_isa.h says AVX2 runs.
RowKernels avx2_rows();

}  // namespace nc::attn

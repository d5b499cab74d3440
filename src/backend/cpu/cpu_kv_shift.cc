// CPU shift_key_positions (backend/cpu/cpu_kv_shift.h).
#include "backend/cpu/cpu_kv_shift.h"

#include <cmath>
#include <vector>

#include "backend/kv_shift.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace nc {
namespace {

// Rotates one head's key (2 * half floats, rotate-half pairs) back by the angles whose cos and
// sin are given.
void rotate_back(float* x, const double* c, const double* s, int half) {
  for (int i = 0; i < half; ++i) {
    const double x1 = x[i], x2 = x[i + half];
    x[i] = float(x1 * c[i] + x2 * s[i]);
    x[i + half] = float(x2 * c[i] - x1 * s[i]);
  }
}

void check_rows(const int32_t* rows, int64_t P, const KVCacheShape& kv) {
  for (int64_t r = 0; r < P; ++r) {
    const int32_t page = rows[3 * r], from = rows[3 * r + 1], to = rows[3 * r + 2];
    NC_CHECK(page >= 0 && page < kv.num_pages, "shift_key_positions: page {} outside [0, {})", page,
             kv.num_pages);
    NC_CHECK(from >= 0 && to >= 0, "shift_key_positions: page {} moves from position {} to {}",
             page, from, to);
  }
}

}  // namespace

void cpu_shift_key_positions(Tensor kv_pages, const KVCacheShape& kv, const Tensor& shifts,
                             const Tensor& inv_freq) {
  check_shift_key_positions(kv_pages, kv, shifts, inv_freq);
  kv_pages.expect_dtype(DType::F32, "shift_key_positions pages");
  const int64_t P = shifts.dim(0);
  if (P == 0) return;
  const int32_t* rows = shifts.ptr<int32_t>();
  check_rows(rows, P, kv);
  const float* inv = inv_freq.ptr<float>();
  float* base = kv_pages.ptr<float>();
  const int half = kv.head_dim / 2, ps = kv.page_size;
  // One task per listed page: the angles of its slots once, then every head of every slot.
  ThreadPool::global().parallel_for(P, [&](int64_t begin, int64_t end) {
    std::vector<double> c(static_cast<size_t>(half)), s(static_cast<size_t>(half));
    for (int64_t r = begin; r < end; ++r) {
      const int32_t page = rows[3 * r], from = rows[3 * r + 1], to = rows[3 * r + 2];
      float* pg = base + int64_t(page) * kv.elems_per_page();
      for (int slot = 0; slot < ps; ++slot) {
        for (int i = 0; i < half; ++i) {
          const double a = key_shift_angle(from + slot, to + slot, inv[i]);
          c[size_t(i)] = std::cos(a);
          s[size_t(i)] = std::sin(a);
        }
        for (int h = 0; h < kv.num_kv_heads; ++h)
          rotate_back(pg + kv.offset_in_page(0, slot, h), c.data(), s.data(), half);
      }
    }
  });
}

}  // namespace nc

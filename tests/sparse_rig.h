// The CPU sparse-attention tests' rig (test_cpu_sparse.cc, test_cpu_sparse_head.cc): a CPU
// backend, a page pool of an attention shape, the pool's page bounds, and random rows from the
// rig's own generator (so a test's values depend only on its seed and its calls).
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "kv/page_bounds.h"

namespace nc::sparse_test {

struct SparseRig {
  std::unique_ptr<Backend> be = make_cpu_backend();
  AttentionShape shape;
  Tensor pages, bounds;
  std::mt19937 rng;

  // Pages [num_pages, 2, <page_dims>] of `dtype`, left for the caller to fill; bounds allocated.
  SparseRig(const AttentionShape& s, std::vector<int64_t> page_dims, DType dtype, uint32_t seed)
      : shape(s), rng(seed) {
    std::vector<int64_t> dims = {s.kv.num_pages, 2};
    dims.insert(dims.end(), page_dims.begin(), page_dims.end());
    pages = be->alloc(dims, dtype);
    bounds = be->alloc({s.kv.num_pages, 2, s.num_kv_heads, s.head_dim}, DType::F32);
  }
  // Float32 pages of N(0, scale) values.
  void fill_pages(float scale) {
    std::normal_distribution<float> n(0, scale);
    for (int64_t i = 0; i < pages.numel(); ++i) pages.ptr<float>()[i] = n(rng);
  }
  // update_page_bounds over (page, valid slots) pairs.
  void update(const std::vector<int32_t>& page_slots) {
    Tensor t = be->alloc({int64_t(page_slots.size() / 2), 2}, DType::I32);
    be->copy_from_host(t, page_slots.data());
    be->update_page_bounds(pages, shape.kv, t, bounds);
  }
  // Bounds of every page from its full contents.
  void update_all() {
    std::vector<int32_t> all;
    for (int p = 0; p < shape.kv.num_pages; ++p) all.insert(all.end(), {p, shape.kv.page_size});
    update(all);
  }
  Tensor rows(int64_t T, int64_t width, float scale) {
    Tensor t = be->alloc({T, width}, DType::F32);
    std::normal_distribution<float> n(0, scale);
    for (int64_t i = 0; i < t.numel(); ++i) t.ptr<float>()[i] = n(rng);
    return t;
  }
  PageBounds view() {
    return PageBounds::view(bounds.ptr<float>(), shape.kv.num_pages, shape.num_kv_heads,
                            shape.head_dim);
  }
};

}  // namespace nc::sparse_test

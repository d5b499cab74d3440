// Backend's optional operations: host fallbacks and "not supported" errors.
#include "backend/backend.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "model/random_init.h"

namespace nc {

void Backend::fill_uniform(Tensor t, uint64_t seed, float low, float high) {
  t.expect_contiguous("fill_uniform");
  const int64_t n = t.numel();
  const float span = high - low;
  auto value = [&](int64_t i) { return low + span * uniform_hash01(seed, uint64_t(i)); };
  switch (t.dtype()) {
    case DType::F32: {
      std::vector<float> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[size_t(i)] = value(i);
      copy_from_host(t, v.data());
      break;
    }
    case DType::BF16:
    case DType::F16: {
      std::vector<uint16_t> v(static_cast<size_t>(n));
      const bool bf = t.dtype() == DType::BF16;
      for (int64_t i = 0; i < n; ++i)
        v[size_t(i)] = bf ? f32_to_bf16(value(i)) : f32_to_f16(value(i));
      copy_from_host(t, v.data());
      break;
    }
    default:
      fail("fill_uniform: dtype {} is not a float type", dtype_name(t.dtype()));
  }
}

std::vector<int32_t> Backend::sample_tokens(const Tensor& logits,
                                            const std::vector<float>& inv_temperature,
                                            const std::vector<uint64_t>& seeds) {
  NC_CHECK(logits.ndim() == 2 && int64_t(inv_temperature.size()) == logits.dim(0) &&
               inv_temperature.size() == seeds.size(),
           "sample_tokens: logits {} with {} temperatures and {} seeds", shape_str(logits.shape()),
           inv_temperature.size(), seeds.size());
  const std::vector<float> x = to_host_f32(logits);
  const int64_t R = logits.dim(0), V = logits.dim(1);
  std::vector<int32_t> out(size_t(R), 0);
  for (int64_t r = 0; r < R; ++r) {
    const float* row = x.data() + r * V;
    const float inv_t = inv_temperature[size_t(r)];
    float best = -INFINITY;
    for (int64_t i = 0; i < V; ++i) {
      float s = row[i];
      if (inv_t != 0.0f) {
        const float u = uniform_hash01(seeds[size_t(r)], uint64_t(i)) + 0.5f / 16777216.0f;
        s = s * inv_t - std::log(-std::log(u));
      }
      if (s > best) best = s, out[size_t(r)] = int32_t(i);
    }
  }
  return out;
}

void Backend::begin_capture() {
  fail("backend {}: CUDA graphs are not supported", name());
}

void Backend::end_capture(int) {
  fail("backend {}: CUDA graphs are not supported", name());
}

void Backend::replay(int) {
  fail("backend {}: CUDA graphs are not supported", name());
}

}  // namespace nc

// MLA's two forms on the CPU backend (cpu_mla.h, Backend::mla_attention_values): one request's
// prefill chunk of `rows` new tokens after `cached` tokens already in its pages, at
// DeepSeek-V2-Lite's attention shape (16 heads, kv_lora_rank 512, rope 64, nope 128, v 128),
// absorbed, expanded, and as the cost model chooses (Auto). Times the op alone (float32, the
// machine's threads); the model's projections around it are the same in every form.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>

#include "backend/backend.h"
#include "backend/cpu/cpu_mla.h"
#include "core/host_tensor.h"

namespace nc {
namespace {

constexpr int kH = 16, kDl = 512, kDr = 64, kDn = 128, kDv = 128, kD = kDl + kDr, kPage = 16;

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.1f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

void BM_MlaPrefillChunk(benchmark::State& state, MlaForm form) {
  const int rows = int(state.range(0)), cached = int(state.range(1)), len = cached + rows;
  std::unique_ptr<Backend> be = make_cpu_backend();
  const int pages = (len + kPage - 1) / kPage;
  std::vector<int32_t> ids(size_t(pages), 0);
  for (int p = 0; p < pages; ++p) ids[size_t(p)] = p;
  AttentionStep step;
  PagedKVBatch own;
  own.add(rows, ids, len, kPage);
  step.num_tokens = rows;
  step.levels = {own};
  AttentionShape shape{kH, 1, kD, 1.0f / std::sqrt(float(kDn + kDr)),
                       KVCacheShape{1, pages, kPage, 1, kD}};
  shape.kv.latent = true;
  shape.latent_dim = kDl;
  Tensor kv =
      be->upload(HostTensor{{pages, kPage, 1, kD}, random_values(size_t(pages) * kPage * kD, 1)});
  const Tensor q = be->upload(
      HostTensor{{rows, kH * (kDn + kDr)}, random_values(size_t(rows) * kH * (kDn + kDr), 2)});
  Tensor q_mla = be->upload(HostTensor{{rows, kH * kD}, random_values(size_t(rows) * kH * kD, 3)});
  const Tensor latent = be->upload(HostTensor{{rows, kD}, random_values(size_t(rows) * kD, 4)});
  const Tensor wuk =
      be->upload(HostTensor{{kH, kDl, kDn}, random_values(size_t(kH) * kDl * kDn, 5)});
  const Tensor wuv =
      be->upload(HostTensor{{kH, kDv, kDl}, random_values(size_t(kH) * kDv * kDl, 6)});
  Tensor o_lat = be->alloc({rows, kH * kDl}, DType::F32),
         out = be->alloc({rows, kH * kDv}, DType::F32);
  auto plan = be->plan_attention(step, shape);
  set_mla_form(form);
  for (auto _ : state) {
    be->mla_attention_values(*plan, q, q_mla, latent, kv, wuk, wuv, o_lat, out);
    benchmark::DoNotOptimize(out.data());
  }
  set_mla_form(MlaForm::Auto);
  state.counters["rows"] = rows;
  state.counters["cached"] = cached;
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int cached : {0, 1024})
    for (int rows : {64, 256, 512}) b->Args({rows, cached});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK_CAPTURE(BM_MlaPrefillChunk, absorbed, MlaForm::Absorbed)->Apply(Shapes);
BENCHMARK_CAPTURE(BM_MlaPrefillChunk, expanded, MlaForm::Expanded)->Apply(Shapes);
BENCHMARK_CAPTURE(BM_MlaPrefillChunk, auto, MlaForm::Auto) -> Apply(Shapes);

}  // namespace
}  // namespace nc

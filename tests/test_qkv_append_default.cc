// Backend::qkv_split_norm_rope_append's and attention_appended's defaults (backend.h), on the CPU
// backend (which keeps them): the op splits exactly as qkv_split_norm_rope does, leaves the pages
// alone and says it did not append (the layer then attends with attention(), which appends);
// attention_appended without an append is an Unsupported nc::Error naming the backend. (The CUDA
// override, which appends, is tested in tests/gpu/test_cuda_fused.cc.)
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/backend.h"
#include "core/error.h"

namespace nc {
namespace {

TEST(QkvAppendDefault, SplitsOnlyAndLeavesThePages) {
  std::mt19937 rng(99);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto random = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = normal(rng);
    return v;
  };
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  const int Hq = 4, Hk = 2, D = 16, ps = 4, T = 3, num_pages = 4, max_pos = 32;
  AttentionStep step{T, {}};
  PagedKVBatch own;
  own.add(2, {0}, 2, ps);
  own.add(1, {1, 2}, 6, ps);
  step.levels = {own};
  const AttentionShape shape{Hq, Hk, D, 0.25f, KVCacheShape{1, num_pages, ps, Hk, D}};
  std::unique_ptr<AttentionPlan> plan = cpu->plan_attention(step, shape);
  const std::vector<float> pages_h = random(int64_t(num_pages) * shape.kv.elems_per_page());
  Tensor pages = cpu->upload(HostTensor{{num_pages, 2, ps, Hk, D}, pages_h});
  const int64_t W = int64_t(Hq + 2 * Hk) * D;
  Tensor qkv = cpu->upload(HostTensor{{T, W}, random(T * W)});
  Tensor qn = cpu->upload(HostTensor{{D}, random(D)});
  Tensor kn = cpu->upload(HostTensor{{D}, random(D)});
  Tensor pos = cpu->alloc({T}, DType::I32);
  const std::vector<int32_t> positions = {0, 1, 5};
  cpu->copy_from_host(pos, positions.data());
  std::vector<float> table(size_t(max_pos * D));
  for (int p = 0; p < max_pos; ++p)
    for (int i = 0; i < D / 2; ++i) {
      table[size_t(p * D + i)] = std::cos(0.1f * float(p * (i + 1)));
      table[size_t(p * D + D / 2 + i)] = std::sin(0.1f * float(p * (i + 1)));
    }
  Tensor cs = cpu->upload(HostTensor{{max_pos, D}, table});
  auto outs = [&] {
    return std::vector<Tensor>{cpu->alloc({T, Hq * D}, DType::F32),
                               cpu->alloc({T, Hk * D}, DType::F32),
                               cpu->alloc({T, Hk * D}, DType::F32)};
  };
  std::vector<Tensor> a = outs(), b = outs();
  cpu->qkv_split_norm_rope(qkv, qn, kn, 1e-6f, pos, cs, D, a[0], a[1], a[2]);
  EXPECT_FALSE(cpu->qkv_split_norm_rope_append(*plan, pages, qkv, qn, kn, 1e-6f, pos, cs, D, b[0],
                                               b[1], b[2]));
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(cpu->to_host_f32(a[i]), cpu->to_host_f32(b[i])) << "tensor " << i;
  EXPECT_EQ(cpu->to_host_f32(pages), pages_h);
  Tensor out = cpu->alloc({T, Hq * D}, DType::F32);
  try {
    cpu->attention_appended(*plan, b[0], b[1], b[2], pages, out);
    FAIL() << "attention_appended ran without an append";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find(cpu->name()), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nc

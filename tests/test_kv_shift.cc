// Backend::shift_key_positions on the CPU (the streaming window's re-rotation of cached keys):
// a key that the model's rope put at position p, shifted from p to p - d, equals the key rope
// puts at p - d (1e-5), for every rope scaling the model builds tables for (none, linear,
// llama3, longrope and YaRN, whose tables fold an attention factor into cos and sin), in both
// page layouts, at positions up to 4k where the float32 angles are coarse; values and pages not
// listed stay as they were; ropes the shift does not handle are refused by name.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_ops.h"
#include "core/error.h"
#include "kv/page_shift.h"
#include "model/rope.h"

namespace nc {
namespace {

constexpr int kHeadDim = 32, kMaxPos = 4096;

ModelConfig rope_config(const std::string& type) {
  ModelConfig c;
  c.head_dim = kHeadDim;
  c.max_position = kMaxPos;
  c.rope_theta = 10000.0;
  RopeScaling& rs = c.rope_scaling;
  rs.type = type;
  if (type == "linear") rs.factor = 4.0;
  if (type == "llama3") rs.factor = 8.0, rs.original_max_position = 512;
  if (type == "longrope") {  // the long factors (max_position > original): attention factor > 1
    rs.original_max_position = 1024;
    for (int i = 0; i < kHeadDim / 2; ++i) {
      rs.short_factor.push_back(1.0 + 0.1 * i);
      rs.long_factor.push_back(1.0 + 0.5 * i);
    }
  }
  if (type == "yarn") rs.factor = 4.0, rs.original_max_position = 1024, rs.mscale = 1.0;
  return c;
}

struct Geometry {
  KVLayout layout;
  int num_pages = 6, page_size = 8, heads = 2;
  KVCacheShape shape() const {
    return KVCacheShape{1, num_pages, page_size, heads, kHeadDim, layout};
  }
  Shape tensor_shape() const {
    return layout == KVLayout::NHD ? Shape{num_pages, 2, page_size, heads, kHeadDim}
                                   : Shape{num_pages, 2, heads, page_size, kHeadDim};
  }
};

class KvShift : public ::testing::TestWithParam<std::tuple<std::string, KVLayout>> {
 protected:
  // Raw (unrotated) keys, one head vector per (page, slot, head).
  std::vector<float> random(size_t n) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = u(rng);
    return v;
  }
  // rope(x, pos) with the model's table, through the CPU backend's reference rope.
  std::vector<float> rope(const std::vector<float>& x, int pos, const Tensor& table) {
    std::vector<float> q(size_t(kHeadDim), 0.0f), k = x;
    Tensor tq = Tensor(q.data(), {1, kHeadDim}, DType::F32);
    Tensor tk = Tensor(k.data(), {1, kHeadDim}, DType::F32);
    int32_t p = pos;
    cpu_rope(tq, tk, Tensor(&p, {1}, DType::I32), table, kHeadDim);
    return k;
  }

  std::mt19937 rng{20261205};
  std::unique_ptr<Backend> cpu = make_cpu_backend();
};

TEST_P(KvShift, ShiftedKeyEqualsTheKeyRotatedAtTheNewPosition) {
  const auto& [type, layout] = GetParam();
  const ModelConfig cfg = rope_config(type);
  const HostTensor host_table = rope_cos_sin_table(cfg, kMaxPos);
  const Tensor table = cpu->upload(host_table);
  const std::vector<float> inv = rope_inverse_frequencies(cfg);
  const Tensor inv_freq = cpu->upload(HostTensor{{int64_t(inv.size())}, inv});
  const Geometry g{layout};
  const KVCacheShape kv = g.shape();
  Tensor pages = cpu->alloc(g.tensor_shape(), DType::F32);
  // Page i's slot 0 sits at `from[i]`; pages 0..4 move, page 5 is not listed.
  const std::vector<int32_t> from = {8, 64, 1000, 3000, 4080, 40}, to = {0, 8, 16, 2944, 24, 40};
  std::vector<std::vector<float>> raw(size_t(g.num_pages * g.page_size * g.heads));
  float* base = pages.ptr<float>();
  const std::vector<float> values = random(size_t(pages.numel()));
  std::copy(values.begin(), values.end(), base);  // V (and K, overwritten below)
  for (int pg = 0; pg < g.num_pages; ++pg)
    for (int s = 0; s < g.page_size; ++s)
      for (int h = 0; h < g.heads; ++h) {
        auto& x = raw[size_t((pg * g.page_size + s) * g.heads + h)];
        x = random(kHeadDim);
        const std::vector<float> k = rope(x, from[size_t(pg)] + s, table);
        std::copy(k.begin(), k.end(), base + pg * kv.elems_per_page() + kv.offset_in_page(0, s, h));
      }
  const std::vector<float> before(base, base + pages.numel());
  std::vector<int32_t> rows;
  for (int pg = 0; pg < 5; ++pg) rows.insert(rows.end(), {pg, from[size_t(pg)], to[size_t(pg)]});
  cpu->shift_key_positions(pages, kv, Tensor(rows.data(), {5, kKVPageShiftFields}, DType::I32),
                           inv_freq);
  double worst = 0;
  for (int pg = 0; pg < g.num_pages; ++pg)
    for (int s = 0; s < g.page_size; ++s)
      for (int h = 0; h < g.heads; ++h) {
        const std::vector<float> want =
            rope(raw[size_t((pg * g.page_size + s) * g.heads + h)], to[size_t(pg)] + s, table);
        const int64_t k_at = pg * kv.elems_per_page() + kv.offset_in_page(0, s, h);
        const int64_t v_at = pg * kv.elems_per_page() + kv.offset_in_page(1, s, h);
        for (int i = 0; i < kHeadDim; ++i) {
          worst = std::max(worst, std::fabs(double(base[k_at + i]) - want[size_t(i)]));
          ASSERT_EQ(base[v_at + i], before[size_t(v_at + i)]) << "a value moved";
          if (pg == 5) {
            ASSERT_EQ(base[k_at + i], before[size_t(k_at + i)]) << "page 5 moved";
          }
        }
      }
  EXPECT_LT(worst, 1e-5) << type;
  std::printf("rope %s %s: worst |shifted - rope(k, p - d)| = %.2e\n", type.c_str(),
              layout == KVLayout::NHD ? "NHD" : "HND", worst);
}

INSTANTIATE_TEST_SUITE_P(Ropes, KvShift,
                         ::testing::Combine(::testing::Values("none", "linear", "llama3",
                                                              "longrope", "yarn"),
                                            ::testing::Values(KVLayout::NHD, KVLayout::HND)));

TEST(KvShiftArgs, EmptyShiftsDoNothingAndBadOnesAreNamed) {
  auto cpu = make_cpu_backend();
  const Geometry g{KVLayout::NHD};
  KVCacheShape kv = g.shape();
  Tensor pages = cpu->alloc(g.tensor_shape(), DType::F32);
  std::vector<float> inv(kHeadDim / 2, 0.5f);
  const Tensor inv_freq(inv.data(), {kHeadDim / 2}, DType::F32);
  int32_t none = 0;
  cpu->shift_key_positions(pages, kv, Tensor(&none, {0, 3}, DType::I32), inv_freq);
  std::vector<int32_t> bad_page = {6, 8, 0};
  EXPECT_THROW(
      cpu->shift_key_positions(pages, kv, Tensor(bad_page.data(), {1, 3}, DType::I32), inv_freq),
      Error);
  std::vector<int32_t> bad_pos = {1, -8, 0};
  EXPECT_THROW(
      cpu->shift_key_positions(pages, kv, Tensor(bad_pos.data(), {1, 3}, DType::I32), inv_freq),
      Error);
  const Tensor short_inv(inv.data(), {kHeadDim / 4}, DType::F32);
  EXPECT_THROW(cpu->shift_key_positions(pages, kv, Tensor(&none, {0, 3}, DType::I32), short_inv),
               Error);
  kv.fp8 = true;
  EXPECT_THROW(cpu->shift_key_positions(pages, kv, Tensor(&none, {0, 3}, DType::I32), inv_freq),
               Error);
}

TEST(KvShiftArgs, RopesThatAreNotAPureShiftAreRefused) {
  for (const char* ok : {"none", "linear", "llama3", "longrope", "yarn"})
    EXPECT_NO_THROW(check_rope_position_shift(rope_config(ok))) << ok;
  ModelConfig dynamic = rope_config("none");
  dynamic.rope_scaling.type = "dynamic";  // NTK by sequence length: the table moves with it
  try {
    check_rope_position_shift(dynamic);
    ADD_FAILURE() << "dynamic rope accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("dynamic"), std::string::npos) << e.what();
  }
  ModelConfig mla = rope_config("yarn");
  mla.mla.kv_lora_rank = 64;
  mla.architecture = "DeepseekV2ForCausalLM";
  EXPECT_THROW(check_rope_position_shift(mla), Error);
}

}  // namespace
}  // namespace nc

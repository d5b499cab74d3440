// Weights kept as the GGUF file stores them (issue #20): the loader keeps the file's bytes
// (q/k rows un-permuted as whole rows), fused tensors concatenate raw rows of one dtype and fall
// back to float32 for mixed dtypes, and the CPU decoder over raw weights agrees with the same
// weights dequantized to float32 within the activation quantization's tolerance.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "formats/gguf.h"
#include "golden.h"
#include "model/model_loader.h"
#include "seq_runner.h"

namespace nc {
namespace {

const std::string kGguf = std::string(NC_DEFAULT_MODEL_DIR) + "/SmolLM2-135M-Instruct.Q4_1.gguf";
// Relative error of logits, raw weights vs float32 (measured: see RawAndFloat32WeightsAgree).
constexpr double kActivationQuantTolerance = 0.03;  // measured 0.0095 (2026-12-05)

// A raw f16 copy of a float32 tensor, and the float32 tensor of exactly those f16 values.
HostTensor to_f16(const HostTensor& t) {
  HostTensor r{t.shape, {}};
  r.dtype = DType::F16;
  r.raw.resize(t.data.size() * 2);
  for (size_t i = 0; i < t.data.size(); ++i) {
    const uint16_t h = f32_to_f16(t.data[i]);
    std::memcpy(r.raw.data() + 2 * i, &h, 2);
  }
  return r;
}

TEST(RawWeights, UnpermuteMovesWholeRawRows) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  HostTensor f{{12, 8}, std::vector<float>(96)};  // two heads of 6 rows
  for (float& x : f.data) x = normal(rng);
  HostTensor raw = to_f16(f);
  HostTensor want = dequantized(raw);
  unpermute_gguf_qk(raw, 2, "raw");
  unpermute_gguf_qk(want, 2, "f32");
  EXPECT_EQ(raw.dtype, DType::F16);
  EXPECT_EQ(dequantized(raw).data, want.data);
  EXPECT_NE(dequantized(to_f16(f)).data, want.data);  // the permutation moved something
}

// The fused qkv of tiny-llama's layer 0 with k_proj in f16 and q/v in float32: mixed dtypes, so
// the fused tensor is float32, holding exactly the f16 values; the model is the one whose k_proj
// is float32 with those values, bit for bit. With q, k and v all f16 the fused tensor stays f16
// (half the bytes) and agrees with float32 weights of the same values.
TEST(RawWeights, MixedDtypeFusionFallsBackToFloat32) {
  const LoadedModel lm = load_model(testing::fixtures_dir() + "/tiny-llama");
  const std::string p = "model.layers.0.self_attn.";
  WeightMap mixed = lm.weights, rounded = lm.weights, all_f16 = lm.weights,
            all_rounded = lm.weights;
  mixed[p + "k_proj.weight"] = to_f16(lm.weights.at(p + "k_proj.weight"));
  rounded[p + "k_proj.weight"] = dequantized(mixed[p + "k_proj.weight"]);
  for (const char* part : {"q_proj.weight", "k_proj.weight", "v_proj.weight"}) {
    all_f16[p + part] = to_f16(lm.weights.at(p + part));
    all_rounded[p + part] = dequantized(all_f16[p + part]);
  }
  auto backend = make_cpu_backend();
  LlamaModel a(lm.config, mixed, *backend), b(lm.config, rounded, *backend),
      c(lm.config, all_f16, *backend), d(lm.config, all_rounded, *backend);
  EXPECT_EQ(a.weight_bytes(), b.weight_bytes());
  const int64_t qkv = (lm.config.num_heads + 2 * lm.config.num_kv_heads) * lm.config.head_dim *
                      lm.config.hidden_size;
  EXPECT_EQ(c.weight_bytes(), b.weight_bytes() - 2 * qkv);  // f16 rows: 2 bytes a value, not 4
  const std::vector<int32_t> prompt = {1, 7, 3, 12, 5, 30, 2};
  auto run = [&](LlamaModel& m) {
    testing::SeqRunner r(m, 4, 64);
    return r.step({r.add_sequence()}, {prompt})[0];
  };
  const std::vector<float> la = run(a), lb = run(b), lc = run(c), ld = run(d);
  EXPECT_EQ(la, lb);
  // The f16 kernel against the f32 one over the same values: float rounding apart.
  EXPECT_LE(testing::rel_err(lc.data(), ld.data(), ld.size()), 1e-5);
}

class RawGguf : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kGguf)) GTEST_SKIP() << kGguf << " is absent";
  }
};

// The loaded matrices are the file's bytes: as they are for v, un-permuted rows for q (equal,
// once dequantized, to the float32 path's un-permuted rows).
TEST_F(RawGguf, LoaderKeepsTheFileBytes) {
  const LoadedModel lm = load_model(kGguf);
  const GgufFile f = GgufFile::open(kGguf);
  const HostTensor& v = lm.weights.at("model.layers.3.self_attn.v_proj.weight");
  const GgufTensorInfo* vi = f.find_tensor("blk.3.attn_v.weight");
  ASSERT_EQ(v.dtype, DType::Q4_1);
  ASSERT_EQ(v.raw.size(), vi->nbytes);
  EXPECT_EQ(std::memcmp(v.raw.data(), f.tensor_data(*vi), vi->nbytes), 0);
  EXPECT_EQ(lm.weights.at("model.embed_tokens.weight").dtype, DType::Q8_0);
  EXPECT_EQ(lm.weights.at("model.norm.weight").dtype, DType::F32);

  const HostTensor& q = lm.weights.at("model.layers.3.self_attn.q_proj.weight");
  ASSERT_EQ(q.dtype, DType::Q4_1);
  HostTensor want = f.load_f32(*f.find_tensor("blk.3.attn_q.weight"));
  unpermute_gguf_qk(want, lm.config.num_heads, "q");
  EXPECT_EQ(dequantized(q).data, want.data);
}

// The decoder over raw Q4_1/Q8_0 weights (activations quantized per block in the dot products)
// against the same weights dequantized to float32 (exact float dot products): the last
// position's logits agree within the activation quantization's error, and so does the argmax.
TEST_F(RawGguf, RawAndFloat32WeightsAgree) {
  const LoadedModel lm = load_model(kGguf);
  WeightMap f32;
  for (const auto& [name, t] : lm.weights) f32.emplace(name, dequantized(t));
  auto backend = make_cpu_backend();
  LlamaModel raw(lm.config, lm.weights, *backend), full(lm.config, f32, *backend);
  EXPECT_LT(raw.weight_bytes() * 4, full.weight_bytes());
  const std::vector<int32_t> prompt = {1, 9690, 314, 260, 3616, 28, 3456, 253, 1345, 30};
  const int64_t V = lm.config.vocab_size;
  auto last = [&](LlamaModel& m) {
    testing::SeqRunner r(m, 16, 64);
    const std::vector<float> all = r.step({r.add_sequence()}, {prompt})[0];
    return std::vector<float>(all.end() - V, all.end());
  };
  const std::vector<float> a = last(raw), b = last(full);
  const double err = testing::rel_err(a.data(), b.data(), size_t(V));
  RecordProperty("rel_err", std::to_string(err));
  EXPECT_LE(err, kActivationQuantTolerance);
  EXPECT_EQ(testing::argmax(a.data(), V), testing::argmax(b.data(), V));
}

}  // namespace
}  // namespace nc

// Structured output on the GPU: Backend::apply_token_bitmask (the CUDA kernel) equals the CPU
// backend's op bit for bit, the device sampler with a row's token bitmask draws only allowed
// ids, as the CPU backend's reference draw does (at SmolLM2's and Qwen3's vocabularies), and the
// engine's structured steps (masks filled while the forward pass runs) change no token with
// graphs or asynchronous scheduling.
#include <cmath>
#include <map>
#include <random>

#include "backend/sampling_filter.h"
#include "gpu_test_util.h"
#include "nanocascade/engine.h"

namespace nc::testing {
namespace {

using CudaTokenBitmask = GpuVsCpu;

std::vector<int32_t> random_words(std::mt19937& rng, size_t n, uint32_t keep_mask) {
  std::vector<int32_t> w(n);
  for (int32_t& x : w) x = int32_t(uint32_t(rng()) & (uint32_t(rng()) | keep_mask));
  return w;
}

bool allowed(const std::vector<int32_t>& words, int64_t row, int64_t W, int64_t id) {
  return (uint32_t(words[size_t(row * W + id / 32)]) >> (id % 32)) & 1u;
}

TEST_F(CudaTokenBitmask, KernelEqualsCpuOp) {
  for (int V : {49152, 151936, 1000}) {
    const int R = 37;
    const int W = (V + 31) / 32;
    const std::vector<float> x = random_vec(rng, size_t(R) * V, 3.0f);
    const std::vector<int32_t> words = random_words(rng, size_t(R) * W, 0);
    Tensor g = gpu->alloc({R, V}, DType::F32), c = cpu->alloc({R, V}, DType::F32);
    gpu->copy_from_host(g, x.data());
    cpu->copy_from_host(c, x.data());
    Tensor gm = gpu->alloc({R, W}, DType::I32), cm = cpu->alloc({R, W}, DType::I32);
    gpu->copy_from_host(gm, words.data());
    cpu->copy_from_host(cm, words.data());
    gpu->apply_token_bitmask(g, gm);
    cpu->apply_token_bitmask(c, cm);
    const std::vector<float> got = gpu->to_host_f32(g), want = cpu->to_host_f32(c);
    ASSERT_EQ(got.size(), want.size());
    int64_t diffs = 0, masked = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      diffs += !(got[i] == want[i]);
      masked += std::isinf(want[i]);
    }
    EXPECT_EQ(diffs, 0) << "V " << V;
    EXPECT_GT(masked, int64_t(R) * V / 2);  // about three quarters of the bits are clear
  }
}

TEST_F(CudaTokenBitmask, SamplerDrawsOnlyAllowedIds) {
  for (int V : {49152, 151936}) {
    const int R = 24, W = (V + 31) / 32;
    const std::vector<float> x = random_vec(rng, size_t(R) * V, 2.0f);
    Tensor g = gpu->alloc({R, V}, DType::F32), c = cpu->alloc({R, V}, DType::F32);
    gpu->copy_from_host(g, x.data());
    cpu->copy_from_host(c, x.data());
    // Few allowed ids per row (a grammar's usual mask); every third row has no mask.
    std::vector<int32_t> words(size_t(R) * W, 0);
    std::vector<RowSampling> rows(R);
    for (int r = 0; r < R; ++r) {
      rows[r].inv_temperature = r % 2 ? 0.0f : 1.0f;
      rows[r].seed = uint64_t(1000 + r);
      if (r % 4 == 1) rows[r].top_k = 5;
      if (r % 3 == 2) continue;
      for (int k = 0; k < 12; ++k) {
        const int64_t id = int64_t(rng() % uint32_t(V));
        words[size_t(r) * W + id / 32] |= int32_t(1u << (id % 32));
      }
      rows[r].token_bitmask.assign(words.begin() + r * W, words.begin() + (r + 1) * W);
    }
    const std::vector<int32_t> got = gpu->sample_tokens(g, rows);
    const std::vector<int32_t> ref = cpu->sample_tokens(c, rows);
    int same = 0;
    for (int r = 0; r < R; ++r) {
      if (!rows[r].token_bitmask.empty()) {
        EXPECT_TRUE(allowed(words, r, W, got[r])) << "V " << V << " row " << r;
        EXPECT_TRUE(allowed(words, r, W, ref[r])) << "V " << V << " row " << r;
      }
      same += got[r] == ref[r];
    }
    EXPECT_GE(same, R - 2) << "V " << V;  // same noise, same candidates (fast-math ties aside)
  }
}

// The engine on CUDA with grammar rows mixed with free ones (random weights: the grammar reads
// the ids through its synthetic vocabulary, engine/grammar.h): the masks are filled while the
// forward pass runs and uploaded before the draw, so asynchronous scheduling changes no token
// (eager or with graphs), and the structured steps go into flight.
TEST(CudaStructuredEngine, MasksOverlapTheForwardPassAndChangeNoToken) {
  const std::string path = small_qwen3_config_file("nc_structured_engine.json", 2, 12000);
  const std::string schema = R"({"type": "object", "properties": {
      "id": {"type": "integer", "minimum": 0, "maximum": 999}, "tag": {"enum": ["a", "b"]},
      "xs": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}},
    "required": ["id", "tag", "xs"], "additionalProperties": false})";
  std::vector<SamplingParams> params;
  for (int i = 0; i < 6; ++i) {
    SamplingParams p;
    p.temperature = i % 2 ? 0.8f : 0.0f;
    p.seed = uint64_t(i);
    p.max_tokens = 48;
    if (i % 3 != 2)
      p.structured = {StructuredOutput::Kind::JsonSchema, schema};
    else
      p.ignore_eos = true;
    params.push_back(p);
  }
  auto run = [&](bool graphs, bool async) {
    EngineConfig cfg = small_engine_config(path, 5);
    cfg.enable_cuda_graphs = graphs;
    cfg.async_scheduling = async;
    Engine e(cfg);
    std::map<RequestId, size_t> index;
    for (size_t i = 0; i < params.size(); ++i)
      index[e.add_request(std::vector<int32_t>{int32_t(10 + i), 20, 30}, params[i])] = i;
    std::vector<std::vector<int32_t>> toks(params.size());
    while (e.has_unfinished())
      for (const RequestOutput& o : e.step())
        toks[index[o.id]].insert(toks[index[o.id]].end(), o.new_token_ids.begin(),
                                 o.new_token_ids.end());
    const EngineStats s = e.stats();
    std::printf("graphs %d async %d: %lld steps, %lld overlapped, %lld graph steps\n", int(graphs),
                int(async), (long long)s.num_steps, (long long)s.num_overlapped_steps,
                (long long)s.num_graph_steps);
    EXPECT_EQ(s.num_overlapped_steps > 0, async);
    EXPECT_EQ(s.used_pages, 0);
    return toks;
  };
  const auto base = run(false, false);
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_FALSE(base[i].empty()) << i;
    // The grammar ends its requests once the object is complete (at most 45 characters, so
    // fewer than 48 tokens); the free ones run to max_tokens.
    if (params[i].structured.active()) {
      EXPECT_LT(base[i].size(), 46u) << i;
    } else {
      EXPECT_EQ(base[i].size(), 48u) << i;
    }
  }
  // Asynchronous scheduling changes no token, eager or with graphs (graphs and eager passes may
  // differ in rounding: test_cuda_engine.cc).
  EXPECT_EQ(run(false, true), base);
  const auto graphs = run(true, false);
  EXPECT_EQ(run(true, true), graphs);
}

}  // namespace
}  // namespace nc::testing

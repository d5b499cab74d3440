// Helpers for the GPU tests: the same random inputs on the CPU backend (the oracle, float32) and
// the CUDA backend (bf16). Inputs are rounded to bf16 first, so both see identical values.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "nanocascade/engine.h"

namespace nc::testing {

inline float round_bf16(float x) {
  return bf16_to_f32(f32_to_bf16(x));
}

inline std::vector<float> random_vec(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = round_bf16(normal(rng));
  return v;
}

// ||out - ref|| / ||ref||; any NaN or inf in out gives +inf.
inline double rel_error(const std::vector<float>& out, const std::vector<float>& ref) {
  if (out.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return std::numeric_limits<double>::infinity();
    num += (double(out[i]) - ref[i]) * (double(out[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

constexpr double kBf16Tol = 1e-2;

// `batch` decodes over one shared prefix (pages [0, prefix_pages), whole pages) plus each
// request's own `own_tokens`: the step as plain paged attention and as a 2-level cascade, with
// random pages, q, k, v (drawn in that order). `spare_pages` more pages sit unused in the pool.
struct SharedPrefixDecode {
  AttentionShape shape;
  AttentionStep plain, casc;
  HostTensor pages, q, k, v;
};

inline SharedPrefixDecode shared_prefix_decode(std::mt19937& rng, int Hq, int Hk, int D, int ps,
                                               int batch, int prefix_pages, int own_tokens,
                                               int spare_pages = 0) {
  const int own_pages = (own_tokens + ps - 1) / ps;
  const int num_pages = prefix_pages + batch * own_pages + spare_pages;
  SharedPrefixDecode d;
  d.shape = AttentionShape{Hq, Hk, D, 1.0f / std::sqrt(float(D)),
                           KVCacheShape{1, num_pages, ps, Hk, D, KVLayout::NHD}};
  std::vector<int32_t> prefix(prefix_pages);
  std::iota(prefix.begin(), prefix.end(), 0);
  d.plain.num_tokens = d.casc.num_tokens = batch;
  PagedKVBatch all, shared, own;
  shared.causal = false;
  shared.add(batch, prefix, prefix_pages * ps, ps);
  for (int b = 0; b < batch; ++b) {
    std::vector<int32_t> mine(own_pages);
    std::iota(mine.begin(), mine.end(), prefix_pages + b * own_pages);
    std::vector<int32_t> both = prefix;
    both.insert(both.end(), mine.begin(), mine.end());
    all.add(1, both, prefix_pages * ps + own_tokens, ps);
    own.add(1, mine, own_tokens, ps);
  }
  d.plain.levels = {all};
  d.casc.levels = {shared, own};
  d.pages = HostTensor{{num_pages, 2, ps, Hk, D},
                       random_vec(rng, size_t(num_pages) * d.shape.kv.elems_per_page())};
  d.q = HostTensor{{batch, Hq * D}, random_vec(rng, size_t(batch) * Hq * D)};
  d.k = HostTensor{{batch, Hk * D}, random_vec(rng, size_t(batch) * Hk * D)};
  d.v = HostTensor{{batch, Hk * D}, random_vec(rng, size_t(batch) * Hk * D)};
  return d;
}

// Page ids handed out in a shuffled order, so that a wrong page index or stride reads another
// page's values: reset() makes `count` ids (`tokens` tokens' pages at page size ps, plus 16
// spares), take() hands out the next ones for `tokens` tokens (a test pool too small fails), and
// rewind() starts again from the first.
class ShuffledPages {
 public:
  void reset(int tokens, int ps, std::mt19937& rng) {
    count = tokens / ps + 16;
    perm_.resize(size_t(count));
    std::iota(perm_.begin(), perm_.end(), 0);
    std::shuffle(perm_.begin(), perm_.end(), rng);
    next_ = 0;
  }
  void rewind() { next_ = 0; }
  std::vector<int32_t> take(int tokens, int ps) {
    std::vector<int32_t> p;
    for (int i = 0; i < (tokens + ps - 1) / ps; ++i) {
      EXPECT_LT(next_, count) << "test pool too small";
      p.push_back(perm_[size_t(next_++ % count)]);
    }
    return p;
  }
  int count = 0;

 private:
  std::vector<int32_t> perm_;
  int next_ = 0;
};

class GpuVsCpu : public ::testing::Test {
 protected:
  void SetUp() override {
    cpu = make_cpu_backend();
    gpu = make_cuda_backend(0);
  }

  // The same values on both backends (float32 on the CPU, bf16 on the GPU).
  std::pair<Tensor, Tensor> both(const Shape& shape, const std::vector<float>& data) {
    HostTensor h{shape, data};
    return {cpu->upload(h), gpu->upload(h)};
  }
  std::pair<Tensor, Tensor> both_random(const Shape& shape, float scale = 1.0f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return both(shape, random_vec(rng, size_t(n), scale));
  }
  std::pair<Tensor, Tensor> both_i32(const std::vector<int32_t>& v) {
    Tensor c = cpu->alloc({int64_t(v.size())}, DType::I32);
    Tensor g = gpu->alloc({int64_t(v.size())}, DType::I32);
    cpu->copy_from_host(c, v.data());
    gpu->copy_from_host(g, v.data());
    return {c, g};
  }
  // Output tensors; the GPU one is poisoned with NaN so an unwritten element fails.
  std::pair<Tensor, Tensor> outputs(const Shape& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return both(shape, std::vector<float>(size_t(n), std::nanf("")));
  }

  // d's plain step on the CPU backend (float32): the reference output [batch, Hq * D].
  std::vector<float> cpu_plain_attention(const SharedPrefixDecode& d) {
    const int64_t batch = d.q.shape[0];
    Tensor pc = cpu->upload(d.pages);
    Tensor oc = cpu->alloc({batch, d.q.shape[1]}, DType::F32);
    cpu->attention(*cpu->plan_attention(d.plain, d.shape), cpu->upload(d.q), cpu->upload(d.k),
                   cpu->upload(d.v), pc, oc);
    return cpu->to_host_f32(oc);
  }

  double err(Backend& b_out, const Tensor& out, const Tensor& ref) {
    return rel_error(b_out.to_host_f32(out), cpu->to_host_f32(ref));
  }

  std::mt19937 rng{20251126};
  std::unique_ptr<Backend> cpu, gpu;
};

// A small Qwen3 config (hidden 256, 4/2 heads of 128) written to a temporary file `name`, for
// engine tests with random weights.
inline std::string small_qwen3_config_file(const std::string& name, int layers, int vocab) {
  const auto path = std::filesystem::temp_directory_path() / name;
  std::FILE* f = std::fopen(path.c_str(), "w");
  EXPECT_NE(f, nullptr) << path;
  if (!f) return path.string();
  std::fprintf(f,
               R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": 256,
      "num_hidden_layers": %d, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 128,
      "intermediate_size": 512, "vocab_size": %d, "max_position_embeddings": 4096,
      "rms_norm_eps": 1e-6, "rope_theta": 1000000, "tie_word_embeddings": true})",
               layers, vocab);
  std::fclose(f);
  return path.string();
}

// An engine on the CUDA backend over that config with seeded random weights.
inline EngineConfig small_engine_config(const std::string& config_path, uint64_t seed) {
  EngineConfig cfg;
  cfg.model = config_path;
  cfg.load_format = "dummy";
  cfg.dummy_seed = seed;
  cfg.backend = "cuda";
  cfg.kv_cache_memory = "256MiB";
  cfg.max_num_batched_tokens = 512;
  return cfg;
}

}  // namespace nc::testing

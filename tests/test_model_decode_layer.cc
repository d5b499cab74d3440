// Backend::decode_layer as LlamaModel uses it (llama.h: whole_decode_layer), on the CPU. A backend
// whose decode_layer runs the op sequence backend.h documents for it gives the logits of the CPU
// backend (which declines the op) bit for bit, through a chunked prefill and greedy decodes of
// the tiny Llama, Qwen2 (q/k/v bias), Qwen3 (q/k norms) and Mistral fixtures: the model's
// hidden/residual convention before and after the op is the one documented. It is asked for
// one-token passes only, once a layer, add_hidden false for the first layer alone and the next
// layer's qkv and o for all but the last; never for MLA layers (tiny DeepSeek-V2). The CUDA
// kernel of the op is checked against the op-by-op layer in tests/gpu/test_cuda_decode_layer.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "forwarding_backend.h"
#include "golden.h"
#include "model/llama.h"
#include "model/model_loader.h"
#include "seq_runner.h"

namespace nc::testing {
namespace {

class ContractBackend : public ForwardingBackend {
 public:
  struct Call {
    bool add_hidden = false;
  };
  std::vector<Call> calls;

  std::string name() const override { return "decode-layer-contract"; }

  bool decode_layer(const AttentionPlan& plan, Tensor pages, const DecodeLayerWeights& w,
                    const DecodeLayerIo& io) override {
    calls.push_back({io.add_hidden});
    Backend& b = *in;
    Tensor hidden = io.hidden, residual = io.residual;
    if (io.add_hidden) {
      b.add_rmsnorm(hidden, residual, w.input_norm, io.eps);
    } else {
      b.rmsnorm(residual, w.input_norm, io.eps, hidden);
    }
    b.linear(hidden, w.qkv, w.qkv_bias, io.qkv);
    const int64_t head_dim = io.cos_sin.dim(1), q_width = io.attn.dim(1);
    const int64_t kv_width = (w.qkv.dim(0) - q_width) / 2;
    Tensor q = b.alloc({1, q_width}, b.dtype()), k = b.alloc({1, kv_width}, b.dtype()),
           v = b.alloc({1, kv_width}, b.dtype());
    b.qkv_split_norm_rope(io.qkv, w.q_norm, w.k_norm, io.eps, io.positions, io.cos_sin,
                          int(head_dim), q, k, v);
    b.attention(plan, q, k, v, pages, io.attn);
    b.linear(io.attn, w.o_proj, w.o_bias, hidden);
    b.add_rmsnorm(hidden, residual, w.post_norm, io.eps);
    Tensor gate_up = b.alloc({1, w.gate_up.dim(0)}, b.dtype());
    b.linear(hidden, w.gate_up, Tensor(), gate_up);
    b.silu_and_mul(gate_up, io.act);
    b.linear(io.act, w.down, Tensor(), hidden);
    return true;
  }
};

// The prompt in chunks of 6 (the last may be one token: a one-token pass), then `decodes` greedy
// steps, both models fed the plain model's argmax; every pass's logits equal. Returns the
// one-token passes.
int run_both(LlamaModel& contract, LlamaModel& plain, const std::vector<int32_t>& prompt,
             int decodes) {
  SeqRunner rc(contract, 4, 64), rp(plain, 4, 64);
  rc.add_sequence(), rp.add_sequence();
  const int64_t V = plain.config().vocab_size;
  int one_token = 0;
  std::vector<float> last;
  auto pass = [&](const std::vector<int32_t>& toks) {
    one_token += toks.size() == 1;
    const auto a = rc.step({0}, {toks})[0];
    last = rp.step({0}, {toks})[0];
    EXPECT_EQ(a, last) << "a pass of " << toks.size() << " tokens";
  };
  for (const std::vector<int32_t>& chunk : chunks_of(prompt, ChunkMode::Chunks)) pass(chunk);
  for (int d = 0; d < decodes; ++d) {
    const float* row = last.data() + last.size() - size_t(V);
    pass({int32_t(std::max_element(row, row + V) - row)});
  }
  return one_token;
}

void check_fixture(const std::string& name, bool expect_calls) {
  SCOPED_TRACE(name);
  LoadedModel lm = load_model(fixtures_dir() + "/" + name);
  const std::vector<GoldenPrompt> golden = read_golden(fixtures_dir() + "/" + name);
  ASSERT_FALSE(golden.empty());
  ContractBackend contract_backend;
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  LlamaModel contract(lm.config, lm.weights, contract_backend), plain(lm.config, lm.weights, *cpu);
  std::vector<int32_t> prompt = golden[0].ids;
  prompt.resize(std::min<size_t>(prompt.size(), 13));  // 6 + 6 + 1: the last chunk one token
  const int one_token = run_both(contract, plain, prompt, 5);
  const int64_t layers = lm.config.num_layers;
  const auto& calls = contract_backend.calls;
  if (!expect_calls) {
    EXPECT_TRUE(calls.empty());
    return;
  }
  EXPECT_GE(one_token, 5);
  ASSERT_EQ(int64_t(calls.size()), one_token * layers);
  for (size_t i = 0; i < calls.size(); ++i) {
    const int64_t l = int64_t(i) % layers;
    EXPECT_EQ(calls[i].add_hidden, l != 0) << "call " << i;
  }
}

TEST(ModelDecodeLayer, ContractBackendEqualsTheCpuOpByOp) {
  for (const char* name : {"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-mistral"})
    check_fixture(name, true);
}

TEST(ModelDecodeLayer, NeverAskedForMlaLayers) {
  check_fixture("tiny-deepseek-v2", false);
}

}  // namespace
}  // namespace nc::testing

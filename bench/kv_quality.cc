// What an fp8 (e4m3) KV cache costs in quality (issue #17): one text through the same model
// twice on the CPU, once with the float32 cache and once with the fp8 cache, teacher-forced
// (every position's next-token distribution over the true prefix), in chunks of --chunk tokens
// as a prefill would run them. Prints, over the positions: the perplexity of the text under each
// cache, the mean and largest KL(float || fp8) of the next-token distributions, and how often the
// two argmax tokens agree.
//
//   ./build/bench/nc_kv_quality --model models/SmolLM2-135M-Instruct.Q4_1.gguf --text FILE
//       [--tokens 4096] [--chunk 256] [--page-size 16] [--k-scale 1] [--v-scale 1]
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/text_codec.h"
#include "model/llama.h"
#include "model/model_loader.h"

namespace {

struct Args {
  std::string model, text;
  int tokens = 4096, chunk = 256, page_size = 16;
  float k_scale = 1, v_scale = 1;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model")
      a.model = v;
    else if (k == "--text")
      a.text = v;
    else if (k == "--tokens")
      a.tokens = std::stoi(v);
    else if (k == "--chunk")
      a.chunk = std::stoi(v);
    else if (k == "--page-size")
      a.page_size = std::stoi(v);
    else if (k == "--k-scale")
      a.k_scale = std::stof(v);
    else if (k == "--v-scale")
      a.v_scale = std::stof(v);
    else
      throw std::runtime_error("unknown option " + k);
  }
  if (a.model.empty() || a.text.empty())
    throw std::runtime_error("--model and --text are required");
  return a;
}

// One model with its own backend and cache, run chunk by chunk over the text.
struct Runner {
  std::unique_ptr<nc::Backend> backend = nc::make_cpu_backend();
  std::unique_ptr<nc::LlamaModel> model;
  nc::KVCache kv;

  Runner(const nc::LoadedModel& lm, nc::KVCacheDType dtype, const Args& a, int n) {
    model = std::make_unique<nc::LlamaModel>(lm.config, lm.weights, *backend);
    model->set_kv_cache_dtype(dtype, a.k_scale, a.v_scale);
    kv = model->make_kv_cache((n + a.page_size - 1) / a.page_size, a.page_size);
  }
  // Logits [c, V] of tokens [o, o + c) given everything before them.
  std::vector<float> chunk(const std::vector<int32_t>& ids, int o, int c, int ps) {
    nc::ForwardInput in;
    in.token_ids.assign(ids.begin() + o, ids.begin() + o + c);
    std::vector<int32_t> pages((o + c + ps - 1) / ps);
    for (size_t p = 0; p < pages.size(); ++p) pages[p] = int32_t(p);
    nc::PagedKVBatch b;
    b.add(c, pages, o + c, ps);
    in.attention.num_tokens = c;
    in.attention.levels = {b};
    for (int i = 0; i < c; ++i) in.positions.push_back(o + i), in.logit_rows.push_back(i);
    return model->forward(in, kv);
  }
};

// log-softmax of one row, in double.
std::vector<double> log_softmax(const float* x, int64_t V) {
  double mx = x[0];
  for (int64_t i = 1; i < V; ++i) mx = std::max(mx, double(x[i]));
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(x[i]) - mx);
  const double lse = mx + std::log(sum);
  std::vector<double> out(V);
  for (int64_t i = 0; i < V; ++i) out[i] = double(x[i]) - lse;
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args a = parse(argc, argv);
  std::ifstream f(a.text);
  if (!f) throw std::runtime_error("cannot read " + a.text);
  std::stringstream ss;
  ss << f.rdbuf();
  std::vector<int32_t> ids = nc::make_text_codec(a.model)->encode_plain(ss.str(), true);
  if (int(ids.size()) > a.tokens) ids.resize(a.tokens);
  const int n = int(ids.size());
  const nc::LoadedModel lm = nc::load_model(a.model);
  Runner ref(lm, nc::KVCacheDType::Auto, a, n), fp8(lm, nc::KVCacheDType::FP8, a, n);
  const int64_t V = lm.config.vocab_size;
  double nll_ref = 0, nll_fp8 = 0, kl_sum = 0, kl_max = 0;
  int agree = 0, positions = 0;
  for (int o = 0; o < n - 1; o += a.chunk) {
    const int c = std::min(a.chunk, n - 1 - o);
    const std::vector<float> lr = ref.chunk(ids, o, c, a.page_size);
    const std::vector<float> lq = fp8.chunk(ids, o, c, a.page_size);
    for (int i = 0; i < c; ++i) {
      const auto p = log_softmax(lr.data() + i * V, V), q = log_softmax(lq.data() + i * V, V);
      const int32_t next = ids[o + i + 1];
      nll_ref -= p[next], nll_fp8 -= q[next];
      double kl = 0;
      int64_t am_p = 0, am_q = 0;
      for (int64_t t = 0; t < V; ++t) {
        kl += std::exp(p[t]) * (p[t] - q[t]);
        if (p[t] > p[am_p]) am_p = t;
        if (q[t] > q[am_q]) am_q = t;
      }
      kl_sum += kl, kl_max = std::max(kl_max, kl);
      agree += am_p == am_q;
      ++positions;
    }
  }
  std::printf("text %s: %d tokens, %d positions, chunks of %d, page size %d\n", a.text.c_str(), n,
              positions, a.chunk, a.page_size);
  std::printf("kv bytes per token: float32 %lld, fp8 %lld (scales k %g v %g)\n",
              (long long)(ref.model->kv_bytes_per_page(a.page_size) / a.page_size),
              (long long)(fp8.model->kv_bytes_per_page(a.page_size) / a.page_size), a.k_scale,
              a.v_scale);
  const double ppl_ref = std::exp(nll_ref / positions), ppl_fp8 = std::exp(nll_fp8 / positions);
  std::printf("perplexity: float32 KV %.4f, fp8 KV %.4f (%+.3f%%)\n", ppl_ref, ppl_fp8,
              100.0 * (ppl_fp8 / ppl_ref - 1.0));
  std::printf("KL(float || fp8) per position: mean %.3e, max %.3e nats\n", kl_sum / positions,
              kl_max);
  std::printf("argmax agreement: %d of %d (%.2f%%)\n", agree, positions, 100.0 * agree / positions);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "nc_kv_quality: %s\n", e.what());
  return 1;
}

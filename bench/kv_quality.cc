// What fp8 (e4m3) costs in quality (issue #17): one text through the same model on the CPU with
// the float32 KV cache and weights as loaded (the reference), then with an fp8 KV cache, FP8
// linear weights (quantization "fp8": per-channel weight scales, per-token activation scales,
// backend/fp8_weight.h) and both, teacher-forced (every position's next-token distribution over
// the true prefix), in chunks of --chunk tokens as a prefill would run them. Prints, for each
// variant over the positions: the perplexity of the text, the mean and largest KL(ref || variant)
// of the next-token distributions, and how often the argmax tokens agree. With --golden DIR
// (a golden.json of prompts, e.g. tests/fixtures/smollm2), also each variant's greedy tokens
// after every prompt (as many as the golden has), compared with the reference's.
//
//   NC_CPU_ACTIVATIONS=f32 ./build/bench/nc_kv_quality
//       --model models/SmolLM2-135M-Instruct.Q4_1.gguf --text FILE [--tokens 4096] [--chunk 256]
//       [--page-size 16] [--k-scale 1] [--v-scale 1] [--variants kv,w,both] [--golden DIR]
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/text_codec.h"
#include "log_softmax.h"
#include "model/llama.h"
#include "model/model_loader.h"

namespace {

struct Args {
  std::string model, text, golden, variants = "kv,w,both";
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
    else if (k == "--golden")
      a.golden = v;
    else if (k == "--variants")
      a.variants = v;
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

  Runner(const nc::LoadedModel& lm, bool fp8_weights, nc::KVCacheDType dtype, const Args& a,
         int n) {
    nc::ModelConfig c = lm.config;
    if (fp8_weights) c.quantization = "fp8";
    model = std::make_unique<nc::LlamaModel>(c, lm.weights, *backend);
    model->set_kv_cache_dtype(dtype, a.k_scale, a.v_scale);
    kv = model->make_kv_cache((n + a.page_size - 1) / a.page_size, a.page_size);
  }
  // Logits [c, V] of tokens [o, o + c) given everything before them.
  // all_rows false: the last token's logits only.
  std::vector<float> chunk(const std::vector<int32_t>& ids, int o, int c, int ps,
                           bool all_rows = true) {
    nc::ForwardInput in;
    in.token_ids.assign(ids.begin() + o, ids.begin() + o + c);
    std::vector<int32_t> pages((o + c + ps - 1) / ps);
    for (size_t p = 0; p < pages.size(); ++p) pages[p] = int32_t(p);
    nc::PagedKVBatch b;
    b.add(c, pages, o + c, ps);
    in.attention.num_tokens = c;
    in.attention.levels = {b};
    for (int i = 0; i < c; ++i) in.positions.push_back(o + i);
    for (int i = all_rows ? 0 : c - 1; i < c; ++i) in.logit_rows.push_back(i);
    return model->forward(in, kv);
  }
};

struct Variant {
  std::string key, name;
  bool fp8_weights;
  nc::KVCacheDType kv;
};

struct Score {
  double nll = 0, kl_sum = 0, kl_max = 0;
  int agree = 0;
};

int64_t argmax(const float* x, int64_t V) {
  int64_t best = 0;
  for (int64_t t = 1; t < V; ++t)
    if (x[t] > x[best]) best = t;
  return best;
}

// Greedy tokens after `prompt` (one chunk for the prompt, then one token a step).
std::vector<int32_t> greedy(Runner& r, const std::vector<int32_t>& prompt, size_t steps, int64_t V,
                            int ps) {
  std::vector<int32_t> seq = prompt, out;
  int o = 0, c = int(seq.size());
  while (out.size() < steps) {
    const std::vector<float> l = r.chunk(seq, o, c, ps, false);
    out.push_back(int32_t(argmax(l.data(), V)));
    seq.push_back(out.back());
    o += c, c = 1;
  }
  return out;
}

void compare_greedy(const Args& a, Runner& ref, std::vector<std::unique_ptr<Runner>>& runs,
                    const std::vector<Variant>& vs, int64_t V) {
  std::ifstream f(a.golden + "/golden.json");
  if (!f) throw std::runtime_error("cannot read " + a.golden + "/golden.json");
  const nlohmann::json j = nlohmann::json::parse(f);
  for (const auto& p : j.at("prompts")) {
    const auto ids = p.at("ids").get<std::vector<int32_t>>();
    const size_t steps = p.at("greedy").size();
    const std::vector<int32_t> r = greedy(ref, ids, steps, V, a.page_size);
    std::printf(
        "greedy after a %zu-token prompt: reference %s the golden's %zu tokens\n", ids.size(),
        r == p.at("greedy").get<std::vector<int32_t>>() ? "matches" : "differs from", steps);
    for (size_t v = 0; v < vs.size(); ++v) {
      const std::vector<int32_t> g = greedy(*runs[v], ids, steps, V, a.page_size);
      size_t same = 0;
      while (same < g.size() && g[same] == r[same]) ++same;
      std::printf("  %-18s first %zu of %zu tokens equal to the reference's\n", vs[v].name.c_str(),
                  same, steps);
    }
  }
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
  const std::vector<Variant> all = {{"kv", "fp8 KV", false, nc::KVCacheDType::FP8},
                                    {"w", "fp8 weights", true, nc::KVCacheDType::Auto},
                                    {"both", "fp8 weights + KV", true, nc::KVCacheDType::FP8}};
  std::vector<Variant> vs;
  for (const Variant& v : all)
    if (("," + a.variants + ",").find("," + v.key + ",") != std::string::npos) vs.push_back(v);
  Runner ref(lm, false, nc::KVCacheDType::Auto, a, n);
  std::vector<std::unique_ptr<Runner>> runs;
  for (const Variant& v : vs)
    runs.push_back(std::make_unique<Runner>(lm, v.fp8_weights, v.kv, a, n));
  const int64_t V = lm.config.vocab_size;
  double nll_ref = 0;
  std::vector<Score> sc(vs.size());
  int positions = 0;
  for (int o = 0; o < n - 1; o += a.chunk) {
    const int c = std::min(a.chunk, n - 1 - o);
    const std::vector<float> lr = ref.chunk(ids, o, c, a.page_size);
    std::vector<std::vector<double>> p(c);
    for (int i = 0; i < c; ++i) {
      p[i] = nc::quality::log_softmax(lr.data() + i * V, V);
      nll_ref -= p[i][ids[o + i + 1]];
    }
    for (size_t v = 0; v < vs.size(); ++v) {
      const std::vector<float> lq = runs[v]->chunk(ids, o, c, a.page_size);
      for (int i = 0; i < c; ++i) {
        const auto q = nc::quality::log_softmax(lq.data() + i * V, V);
        sc[v].nll -= q[ids[o + i + 1]];
        double kl = 0;
        int64_t am_p = 0, am_q = 0;
        for (int64_t t = 0; t < V; ++t) {
          kl += std::exp(p[i][t]) * (p[i][t] - q[t]);
          if (p[i][t] > p[i][am_p]) am_p = t;
          if (q[t] > q[am_q]) am_q = t;
        }
        sc[v].kl_sum += kl, sc[v].kl_max = std::max(sc[v].kl_max, kl);
        sc[v].agree += am_p == am_q;
      }
    }
    positions += c;
  }
  std::printf("text %s: %d tokens, %d positions, chunks of %d, page size %d\n", a.text.c_str(), n,
              positions, a.chunk, a.page_size);
  std::printf(
      "reference (float32 KV, weights as loaded): weights %lld bytes, kv %lld bytes/token\n",
      (long long)ref.model->weight_bytes(),
      (long long)(ref.model->kv_bytes_per_page(a.page_size) / a.page_size));
  const double ppl_ref = std::exp(nll_ref / positions);
  std::printf("perplexity: reference %.4f\n", ppl_ref);
  for (size_t v = 0; v < vs.size(); ++v) {
    const double ppl = std::exp(sc[v].nll / positions);
    std::printf(
        "%-18s weights %lld bytes, kv %lld bytes/token: perplexity %.4f (%+.3f%%), KL mean %.3e "
        "max %.3e nats, argmax agreement %d of %d (%.2f%%)\n",
        vs[v].name.c_str(), (long long)runs[v]->model->weight_bytes(),
        (long long)(runs[v]->model->kv_bytes_per_page(a.page_size) / a.page_size), ppl,
        100.0 * (ppl / ppl_ref - 1.0), sc[v].kl_sum / positions, sc[v].kl_max, sc[v].agree,
        positions, 100.0 * sc[v].agree / positions);
  }
  if (!a.golden.empty()) compare_greedy(a, ref, runs, vs, V);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "nc_kv_quality: %s\n", e.what());
  return 1;
}

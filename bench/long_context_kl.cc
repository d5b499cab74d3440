#include "long_context_kl.h"

#include "log_softmax.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "backend/backend.h"
#include "core/error.h"
#include "engine/text_codec.h"
#include "model/llama.h"
#include "model/model_loader.h"

namespace nc::quality {

namespace {

int64_t argmax(const std::vector<double>& p) {
  return std::max_element(p.begin(), p.end()) - p.begin();
}

std::vector<int32_t> read_tokens(const KlOptions& o) {
  std::ifstream f(o.text);
  if (!f) throw std::runtime_error("cannot read --text " + o.text);
  std::stringstream ss;
  ss << f.rdbuf();
  return make_text_codec(o.model)->encode_plain(ss.str(), true);
}

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "cpu") return make_cpu_backend();
  if (name == "cuda") return make_cuda_backend();
  throw std::runtime_error("--backend " + name + ": expected cpu or cuda");
}

// Page layout: the prefill's pages [0, C/ps) are shared by every variant; variant v's decode
// pages follow, tail_pages each.
struct Layout {
  int ps = 16, context_pages = 0, tail_pages = 0, variants = 0;
  int num_pages() const { return context_pages + variants * tail_pages; }
  // Pages of variant v holding kv_len tokens.
  std::vector<int32_t> pages(int v, int kv_len) const {
    std::vector<int32_t> out;
    const int n = (kv_len + ps - 1) / ps;
    for (int p = 0; p < n; ++p)
      out.push_back(p < context_pages ? p : context_pages + v * tail_pages + (p - context_pages));
    return out;
  }
};

class Segment {
 public:
  Segment(LlamaModel& model, KVCache& kv, const Layout& lay) : model_(model), kv_(kv), lay_(lay) {}

  // The context ids[0, C) densely, in chunks (the logits are not used).
  void prefill(const std::vector<int32_t>& ids, int C, int chunk) {
    for (int o = 0; o < C; o += chunk) {
      const int c = std::min(chunk, C - o);
      ForwardInput in;
      in.token_ids.assign(ids.begin() + o, ids.begin() + o + c);
      PagedKVBatch b;
      b.add(c, lay_.pages(0, o + c), o + c, lay_.ps);
      in.attention.num_tokens = c;
      in.attention.levels = {b};
      for (int i = 0; i < c; ++i) in.positions.push_back(o + i);
      in.logit_rows.push_back(c - 1);
      model_.forward(in, kv_);
    }
  }

  // Decode step at position pos (token ids[pos]) for every variant: logits [variants, V].
  std::vector<float> decode(int32_t token, int pos, const std::vector<int32_t>& budgets) {
    ForwardInput in;
    PagedKVBatch b;
    for (int v = 0; v < lay_.variants; ++v) {
      in.token_ids.push_back(token);
      in.positions.push_back(pos);
      in.logit_rows.push_back(v);
      b.add(1, lay_.pages(v, pos + 1), pos + 1, lay_.ps);
    }
    in.attention.num_tokens = lay_.variants;
    in.attention.levels = {b};
    in.sparse_budgets = budgets;
    return model_.forward(in, kv_);
  }

 private:
  LlamaModel& model_;
  KVCache& kv_;
  const Layout& lay_;
};

void check_options(const KlOptions& o) {
  NC_CHECK(o.page_size >= 1 && o.context % o.page_size == 0,
           "--context {} must be a multiple of --page-size {}", o.context, o.page_size);
  NC_CHECK(o.positions >= 1 && o.segments >= 1 && o.chunk >= 1,
           "--positions {}, --segments {}, --chunk {}: each must be >= 1", o.positions, o.segments,
           o.chunk);
  for (int b : o.budgets)
    NC_CHECK(b > 0 && b < o.context, "budget {} outside 1..{} (the context): nothing to select", b,
             o.context - 1);
}

}  // namespace

KlReport run_kl(const KlOptions& o) {
  check_options(o);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = read_tokens(o);
  const int span = o.context + o.positions + 1;
  NC_CHECK(int64_t(ids.size()) >= int64_t(span) * o.segments,
           "--text {} has {} tokens, {} segments of {} need {}", o.text, ids.size(), o.segments,
           span, int64_t(span) * o.segments);
  const LoadedModel lm = load_model(o.model);
  NC_CHECK(span <= lm.config.max_position, "context {} + positions {} exceed the model's {}",
           o.context, o.positions, lm.config.max_position);
  std::unique_ptr<Backend> backend = make_backend(o.backend);
  LlamaModel model(lm.config, lm.weights, *backend);
  model.set_sparse_options({true, o.sink_pages, o.window, o.dense_layers, o.per_head});
  Layout lay;
  lay.ps = o.page_size;
  lay.context_pages = o.context / o.page_size;
  lay.tail_pages = (o.positions + o.page_size) / o.page_size;
  lay.variants = 1 + int(o.budgets.size());
  KVCache kv =
      model.make_kv_cache(lay.num_pages(), o.page_size, o.hnd ? KVLayout::HND : KVLayout::NHD);
  std::vector<int32_t> budgets = {0};
  budgets.insert(budgets.end(), o.budgets.begin(), o.budgets.end());
  const int64_t V = lm.config.vocab_size;

  KlReport r;
  r.text_tokens = int64_t(ids.size());
  for (int b : o.budgets) r.budgets.push_back({b});
  for (int s = 0; s < o.segments; ++s) {
    const std::vector<int32_t> seg(ids.begin() + int64_t(s) * span,
                                   ids.begin() + int64_t(s + 1) * span);
    Segment run(model, kv, lay);
    run.prefill(seg, o.context, o.chunk);
    for (int t = 0; t < o.positions; ++t) {
      const int pos = o.context + t;
      const std::vector<float> logits = run.decode(seg[size_t(pos)], pos, budgets);
      const std::vector<double> p = log_softmax(logits.data(), V);
      const int32_t next = seg[size_t(pos) + 1];
      r.dense_nll -= p[size_t(next)];
      const int64_t am = argmax(p);
      for (size_t k = 0; k < o.budgets.size(); ++k) {
        const std::vector<double> q = log_softmax(logits.data() + int64_t(k + 1) * V, V);
        double kl = 0;
        for (int64_t i = 0; i < V; ++i)
          kl += std::exp(p[size_t(i)]) * (p[size_t(i)] - q[size_t(i)]);
        KlResult& res = r.budgets[k];
        res.kl_sum += kl, res.kl_max = std::max(res.kl_max, kl);
        res.nll -= q[size_t(next)];
        res.argmax_agree += argmax(q) == am;
        ++res.positions;
      }
      ++r.positions;
    }
    std::fprintf(stderr, "segment %d of %d done\n", s + 1, o.segments);
  }
  r.pages_read = model.sparse_counts().pages_read;
  r.pages_skipped = model.sparse_counts().pages_skipped;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

void print_kl(const KlOptions& o, const KlReport& r) {
  std::printf(
      "kl: text %s (%lld tokens), %d segments x (%d dense context + %d decode positions), page "
      "size %d, sinks %d pages, window %d, dense layers %d, backend %s, %s, selection per %s, "
      "%.1f s\n",
      o.text.c_str(), (long long)r.text_tokens, o.segments, o.context, o.positions, o.page_size,
      o.sink_pages, o.window, o.dense_layers, o.backend.c_str(), o.hnd ? "HND" : "NHD",
      o.per_head ? "KV head" : "request", r.seconds);
  const double n = double(std::max<int64_t>(r.positions, 1));
  std::printf("kl: dense perplexity %.4f over %lld positions\n", std::exp(r.dense_nll / n),
              (long long)r.positions);
  for (const KlResult& b : r.budgets) {
    const double m = double(std::max<int64_t>(b.positions, 1));
    std::printf(
        "kl: budget %d: mean KL(dense || sparse) %.4e nats, max %.4e, perplexity %.4f (%+.3f%%), "
        "argmax agreement %.2f%%\n",
        b.budget, b.kl_sum / m, b.kl_max, std::exp(b.nll / m),
        100.0 * (std::exp((b.nll - r.dense_nll) / m) - 1.0), 100.0 * double(b.argmax_agree) / m);
  }
  const int64_t pages = r.pages_read + r.pages_skipped;
  std::printf("kl: sparse entries read %lld pages and skipped %lld (%.1f%% skipped)\n",
              (long long)r.pages_read, (long long)r.pages_skipped,
              pages ? 100.0 * double(r.pages_skipped) / double(pages) : 0.0);
}

}  // namespace nc::quality

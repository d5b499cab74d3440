// Long-context quality of sparse decode attention (issue #13, docs/long_context.md "Quality"),
// on a real model (the default SmolLM2-135M-Instruct, 8k context):
//
//   passkey  a 5-digit pass key hidden at a varied depth of filler text of varied length, asked
//            back (plain text the model completes); per trial two requests of the same prompt,
//            dense (SamplingParams::sparse_budget 0) and sparse (--budget), through the Engine: the
//            prompt is computed once (the second request takes it from the prefix cache) and
//            the two decode side by side. Prints the accuracy of each.
//   kl       mean KL divergence of next-token distributions, sparse against dense, teacher-forced
//            on a long real text after a dense prefill (long_context_kl.h), per budget.
//
//   ./build/bench/nc_long_context_quality passkey [--model M] [--trials 50] [--first-trial 0]
//   [--budget 1024]
//       [--lengths 1024,2048,4096,7168] [--seed 0] [--backend cpu] [--cpu-activations int8]
//       [--kv-layout NHD|HND] [--per-head 0|1]
//   (--per-head 1: per-KV-head selection, EngineConfig::sparse_per_head; needs --kv-layout HND.
//   The summary line names the layout and the selection's granularity.)
//   ./build/bench/nc_long_context_quality kl --text FILE [--model M] [--context 6144]
//       [--positions 256] [--segments 2] [--budgets 512,1024,2048] [--chunk 1024]
//       [--backend cpu] [--cpu-activations int8] [--kv-layout NHD|HND] [--per-head 0|1]
//
// The text: a public-domain one shipped in a Debian package (docs/long_context.md: the King
// James Bible of `bible-kjv`, e.g. `bible Gen1:1-Gen50:26`); the tool reads any file.
#include <chrono>
#include <cstdio>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cpu/cpu_matmul.h"
#include "long_context_kl.h"
#include "nanocascade/engine.h"

namespace {

struct PasskeyOptions {
  std::string model = nc::EngineConfig::default_model_path(), backend = "cpu";
  int trials = 50, budget = 1024;
  int first_trial = 0;  // trials before it are skipped (their keys still drawn): a resumed run
  std::string kv_layout = "NHD";
  bool per_head = false;  // EngineConfig::sparse_per_head
  int page_size = 16, window = 128, sink_pages = 1, dense_layers = 2;  // EngineConfig's defaults
  uint32_t seed = 0;
  std::vector<int> lengths = {1024, 2048, 4096, 7168};
};

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
  if (out.empty()) throw std::runtime_error("empty list '" + s + "'");
  return out;
}

// --key value pairs after the mode; the shared ones (--model, --backend, --cpu-activations)
// go to both option sets.
void parse(int argc, char** argv, PasskeyOptions& p, nc::quality::KlOptions& k) {
  for (int i = 2; i < argc; i += 2) {
    if (i + 1 >= argc) throw std::runtime_error(std::string("no value after ") + argv[i]);
    const std::string key = argv[i], v = argv[i + 1];
    if (key == "--model")
      p.model = k.model = v;
    else if (key == "--backend")
      p.backend = k.backend = v;
    else if (key == "--cpu-activations")
      nc::set_cpu_activations(nc::cpu_activations_parse(v.c_str()));
    else if (key == "--trials")
      p.trials = std::stoi(v);
    else if (key == "--first-trial")
      p.first_trial = std::stoi(v);
    else if (key == "--budget")
      p.budget = std::stoi(v);
    else if (key == "--kv-layout") {
      if (v != "NHD" && v != "HND") throw std::runtime_error("--kv-layout " + v + ": NHD or HND");
      p.kv_layout = v;
      k.hnd = v == "HND";
    } else if (key == "--per-head")
      p.per_head = k.per_head = std::stoi(v) != 0;
    else if (key == "--lengths")
      p.lengths = parse_list(v);
    else if (key == "--seed")
      p.seed = uint32_t(std::stoul(v));
    else if (key == "--text")
      k.text = v;
    else if (key == "--context")
      k.context = std::stoi(v);
    else if (key == "--positions")
      k.positions = std::stoi(v);
    else if (key == "--segments")
      k.segments = std::stoi(v);
    else if (key == "--chunk")
      k.chunk = std::stoi(v);
    else if (key == "--page-size")
      p.page_size = k.page_size = std::stoi(v);
    else if (key == "--window")
      p.window = std::stoi(v);
    else if (key == "--sink-pages")
      p.sink_pages = std::stoi(v);
    else if (key == "--dense-layers")
      p.dense_layers = std::stoi(v);
    else if (key == "--budgets")
      k.budgets = parse_list(v);
    else
      throw std::runtime_error("unknown option " + key);
  }
  if (k.model.empty()) k.model = p.model;
}

constexpr const char* kFiller =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";

// The prompt's ids (the passkey test of Mohtashami and Jaggi's Landmark Attention, as plain text:
// a question the model completes), about `length` tokens with the key at `depth` (0..1).
std::vector<int32_t> passkey_prompt(nc::Engine& e, int length, double depth, int key) {
  const std::string k = std::to_string(key);
  const std::string needle =
      "\nThe pass key is " + k + ". Remember it. " + k + " is the pass key.\n";
  const int filler_tokens = int(e.encode(kFiller, false, false).size());
  const int n = std::max(1, (length - 70) / filler_tokens);  // room for the rest
  const int at = int(depth * n);
  std::string text =
      "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
      "it. I will quiz you about the important information there.\n";
  for (int i = 0; i < n; ++i) {
    if (i == at) text += needle;
    text += kFiller;
  }
  if (at >= n) text += needle;
  text += "\nWhat is the pass key? The pass key is";
  return e.encode(text, true, false);
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n') c = ' ';
  return s;
}

// Runs the queued requests to completion; the text of each.
std::vector<std::string> drain(nc::Engine& e, const std::vector<nc::RequestId>& ids) {
  std::vector<std::string> text(ids.size());
  while (e.has_unfinished()) {
    for (const nc::RequestOutput& o : e.step())
      for (size_t i = 0; i < ids.size(); ++i)
        if (o.id == ids[i]) text[i] += o.text_delta;
  }
  return text;
}

int run_passkey(const PasskeyOptions& o) {
  nc::EngineConfig cfg;
  cfg.model = o.model;
  cfg.backend = o.backend;
  cfg.sparse_budget = o.budget;  // page bounds kept; requests choose dense or sparse (0: dense)
  cfg.max_num_seqs = 2;
  cfg.kv_layout = o.kv_layout;
  cfg.sparse_per_head = o.per_head;
  cfg.page_size = o.page_size;
  cfg.sparse_window = o.window;
  cfg.sparse_sink_pages = o.sink_pages;
  cfg.sparse_dense_layers = o.dense_layers;
  // The two requests share the prompt's pages; a cascade level would read them densely for
  // both (selection applies to a request's own level), so every page stays in the own level.
  cfg.enable_cascade = false;
  nc::Engine engine(cfg);
  std::mt19937 rng(o.seed);
  int right[2] = {0, 0}, tokens = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < o.trials; ++t) {
    const int length = o.lengths[size_t(t) % o.lengths.size()];
    // Depths spread over [0, 1] per length: trial t's is the (t / lengths)-th of 10 strata.
    const double depth = (double((t / int(o.lengths.size())) % 10) + 0.5) / 10.0;
    const int key = 10000 + int(rng() % 90000);
    if (t < o.first_trial) continue;
    const std::vector<int32_t> ids = passkey_prompt(engine, length, depth, key);
    tokens += int(ids.size());
    nc::SamplingParams sp;
    sp.temperature = 0;
    sp.max_tokens = 8;
    std::vector<nc::RequestId> req;
    for (int budget : {0, o.budget}) {
      sp.sparse_budget = budget;
      req.push_back(engine.add_request(ids, sp));
    }
    std::vector<std::string> out = drain(engine, req);
    if (o.budget == 0) out[1] = out[0];  // dense only: the "sparse" request was dense too
    for (int m = 0; m < 2; ++m)
      right[m] += out[size_t(m)].find(std::to_string(key)) != std::string::npos;
    std::printf("trial %d: %zu tokens, depth %.2f, key %d: dense '%s' sparse '%s'\n", t, ids.size(),
                depth, key, one_line(out[0]).c_str(), one_line(out[1]).c_str());
    std::fflush(stdout);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int run = o.trials - o.first_trial;
  std::printf("passkey: page %d, window %d, sink pages %d, dense layers %d\n", o.page_size,
              o.window, o.sink_pages, o.dense_layers);
  std::printf("passkey: %s, selection per %s; trials %d..%d (%d prompt tokens, lengths",
              o.kv_layout.c_str(), o.per_head ? "KV head" : "request", o.first_trial, o.trials - 1,
              tokens);
  for (int l : o.lengths) std::printf(" %d", l);
  std::printf("), %.1f s; accuracy dense %d/%d (%.1f%%), budget %d %d/%d (%.1f%%)\n", secs,
              right[0], run, 100.0 * right[0] / run, o.budget, right[1], run,
              100.0 * right[1] / run);
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "passkey" && mode != "kl")
    throw std::runtime_error("usage: nc_long_context_quality passkey|kl [--key value ...]");
  PasskeyOptions p;
  nc::quality::KlOptions k;
  parse(argc, argv, p, k);
  if (mode == "passkey") return run_passkey(p);
  if (k.text.empty()) throw std::runtime_error("kl: --text FILE is required");
  nc::quality::print_kl(k, nc::quality::run_kl(k));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "nc_long_context_quality: %s\n", e.what());
  return 1;
}

// Reading the golden data that tools/make_golden.py writes from Hugging Face transformers.
#pragma once
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace nc::testing {

struct GoldenPrompt {
  std::string text;  // empty for the tiny models
  std::vector<int32_t> ids;
  std::vector<float> logits;  // row-major [rows, vocab]
  int64_t rows = 0, vocab = 0;
  std::vector<int32_t> greedy;  // greedy continuation
};

inline std::string fixtures_dir() {
  return NC_FIXTURES_DIR;
}

// A fixture's config.json (tests/fixtures/<model>/), to read or edit before config_from_hf_json.
inline nlohmann::json fixture_config(const std::string& model) {
  std::ifstream f(fixtures_dir() + "/" + model + "/config.json");
  EXPECT_TRUE(f.good()) << model;
  return nlohmann::json::parse(f);
}

inline std::vector<GoldenPrompt> read_golden(const std::string& dir) {
  std::ifstream f(dir + "/golden.json");
  if (!f) return {};
  nlohmann::json j = nlohmann::json::parse(f);
  std::vector<GoldenPrompt> out;
  for (const auto& p : j.at("prompts")) {
    GoldenPrompt g;
    g.text = p.value("text", "");
    g.ids = p.at("ids").get<std::vector<int32_t>>();
    g.greedy = p.at("greedy").get<std::vector<int32_t>>();
    g.rows = p.at("logits_shape")[0];
    g.vocab = p.at("logits_shape")[1];
    g.logits.resize(size_t(g.rows * g.vocab));
    std::ifstream bin(dir + "/" + p.at("logits_file").get<std::string>(), std::ios::binary);
    bin.read(reinterpret_cast<char*>(g.logits.data()), std::streamsize(g.logits.size() * 4));
    if (!bin) throw std::runtime_error("golden: short logits file in " + dir);
    out.push_back(std::move(g));
  }
  return out;
}

// ||a - b|| / ||b||
inline double rel_err(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace nc::testing

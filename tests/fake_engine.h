// An Engine over the fake token-level model and byte codec (fake_model.h) in each way it can
// sample, for the engine tests (test_engine.cc, test_engine_sessions.cc).
#pragma once
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "fake_model.h"
#include "nanocascade/engine.h"

namespace nc {

constexpr int kFakeVocab = 300;

// How the engine samples: on the host from logits, with the model ("device") waiting for each
// step's tokens, or with the model and asynchronous scheduling (the next step is queued before
// the tokens are taken; its ids are placeholders the model resolves).
enum class Sampling { Host, Device, DeviceAsync };

inline std::string sampling_name(const ::testing::TestParamInfo<Sampling>& info) {
  switch (info.param) {
    case Sampling::Host:
      return "host";
    case Sampling::Device:
      return "device";
    default:
      return "device_async";
  }
}

inline std::unique_ptr<Engine> fake_engine(int page_size = 16, int budget = 2048, int pages = 4096,
                                           int max_seqs = 256, int max_pos = 4096,
                                           Sampling sampling = Sampling::Host) {
  EngineConfig cfg;
  cfg.page_size = page_size;
  cfg.max_num_batched_tokens = budget;
  cfg.max_num_seqs = max_seqs;
  cfg.kv_cache_memory = std::to_string(int64_t(pages) * page_size * 8);  // 8 bytes per slot
  cfg.async_scheduling = sampling == Sampling::DeviceAsync;
  return std::make_unique<Engine>(
      cfg, std::make_unique<fake::FakeModel>(kFakeVocab, max_pos, sampling != Sampling::Host),
      std::make_unique<fake::FakeCodec>());
}

// Greedy sampling of at most `max_tokens`.
inline SamplingParams greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  return p;
}

}  // namespace nc

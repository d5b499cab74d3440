// MemoryTraceWriter (engine/memory_trace.h): the trace of a short run over the fake model parses
// as JSON, follows the Chrome trace format's schema (an array of events with name, ph, ts, pid,
// args) and shows the pages by state at every step and one track per request; a run stopped
// early still leaves valid JSON; a path that cannot be written fails at once, naming it.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "engine/memory_trace.h"
#include "fake_model.h"
#include "nanocascade/engine.h"

namespace nc {
namespace {

std::unique_ptr<Engine> trace_engine() {
  EngineConfig cfg;
  cfg.page_size = 4;
  cfg.max_num_batched_tokens = 32;
  cfg.max_num_seqs = 8;
  cfg.kv_cache_memory = std::to_string(64 * 4 * 8);  // 64 pages of 8-byte slots
  cfg.async_scheduling = false;
  return std::make_unique<Engine>(cfg, std::make_unique<fake::FakeModel>(300, 4096),
                                  std::make_unique<fake::FakeCodec>());
}

std::string temp_path(const char* name) {
  return (std::filesystem::temp_directory_path() /
          (std::string(name) + "-" + std::to_string(::getpid()) + ".json"))
      .string();
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);  // throws on invalid JSON
}

void add_requests(Engine& e, int n) {
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> prompt;
    for (int k = 0; k < 5 + 3 * i; ++k) prompt.push_back(int32_t((7 * i + k) % 256));
    SamplingParams p;
    p.temperature = 0;
    p.max_tokens = 6 + i;
    p.ignore_eos = true;
    e.add_request(prompt, p);
  }
}

TEST(MemoryTrace, AShortRunIsValidChromeTraceJsonWithPagesByStateAndRequestTracks) {
  const std::string path = temp_path("nc-memory-trace");
  int steps = 0;
  int total_pages = 0;
  {
    auto e = trace_engine();
    e->add_memory_hook(std::make_shared<MemoryTraceWriter>(path));
    add_requests(*e, 4);
    for (; e->has_unfinished(); ++steps) e->step();
    total_pages = e->stats().total_pages;
  }  // the engine's end releases the writer, which closes the array
  const nlohmann::json j = read_json(path);
  ASSERT_TRUE(j.is_array());
  int state_events = 0;
  double last_ts = -1;
  std::map<std::string, std::vector<int>> request_tracks;
  for (const auto& ev : j) {
    ASSERT_TRUE(ev.is_object());
    ASSERT_TRUE(ev.contains("name") && ev["name"].is_string()) << ev;
    ASSERT_TRUE(ev.contains("ph") && ev["ph"].is_string()) << ev;
    ASSERT_TRUE(ev.contains("pid") && ev["pid"].is_number_integer()) << ev;
    ASSERT_TRUE(ev.contains("args") && ev["args"].is_object()) << ev;
    const std::string ph = ev["ph"], name = ev["name"];
    if (ph == "M") continue;  // metadata: the process name
    ASSERT_EQ(ph, "C") << ev;
    ASSERT_TRUE(ev["ts"].is_number()) << ev;
    const double ts = ev["ts"];
    EXPECT_GE(ts, last_ts);
    last_ts = ts;
    for (const auto& [k, v] : ev["args"].items()) EXPECT_TRUE(v.is_number()) << name << "." << k;
    if (name == "KV pages") {
      ++state_events;
      const int f = ev["args"]["free"], u = ev["args"]["used"], c = ev["args"]["cached"];
      EXPECT_EQ(f + u + c, total_pages);
    } else if (name.rfind("request ", 0) == 0) {
      request_tracks[name].push_back(ev["args"]["pages"]);
    }
  }
  EXPECT_EQ(state_events, steps);  // pages by state at every step
  ASSERT_EQ(request_tracks.size(), 4u);
  for (const auto& [name, pages] : request_tracks) {
    EXPECT_GT(*std::max_element(pages.begin(), pages.end()), 0) << name;
    EXPECT_EQ(pages.back(), 0) << name << " ends at 0 once finished";
  }
  std::filesystem::remove(path);
}

TEST(MemoryTrace, ARunStoppedEarlyStillLeavesValidJson) {
  const std::string path = temp_path("nc-memory-trace-early");
  {
    auto e = trace_engine();
    e->add_memory_hook(std::make_shared<MemoryTraceWriter>(path));
    add_requests(*e, 3);
    e->step();
    e->step();
  }  // requests still running
  const nlohmann::json j = read_json(path);
  ASSERT_TRUE(j.is_array());
  int state_events = 0;
  for (const auto& ev : j) state_events += ev["name"] == "KV pages";
  EXPECT_EQ(state_events, 2);
  std::filesystem::remove(path);
}

TEST(MemoryTrace, AnUnwritablePathFailsAtOnceNamingIt) {
  const std::string path = "/nonexistent-nc-dir/trace.json";
  try {
    MemoryTraceWriter w(path);
    FAIL() << "expected nc::Error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find(path), std::string::npos) << err.what();
  }
}

}  // namespace
}  // namespace nc

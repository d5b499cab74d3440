// MemoryTraceWriter: a MemoryHook that writes the engine's memory timeline as Chrome trace JSON
// (the JSON-array form of the Trace Event Format; chrome://tracing and ui.perfetto.dev open it).
//
// Per step it writes counter events ("ph":"C", microseconds since the engine was made):
//   "KV pages"          free / used / cached pages now;
//   "page transitions"  the step's allocated / freed / cached / evicted / reloaded pages;
//   "pages per level"   page entries of each attention level of the step (cascade levels first);
//   "request <id>"      one counter track per request: its page count while it runs, 0 once
//                       it leaves the running set;
// and once, at the first step, "memory bytes" (weights, workspace, KV cache).
//
// The file is opened, and the opening bracket written, when the writer is made: a path that
// cannot be written throws nc::Error naming it before any work starts. Each step's events are
// flushed; close() (or the destructor) writes the closing bracket, so a run that stops early
// through an exception or a normal shutdown still leaves valid JSON (and a killed one leaves an
// unterminated array, which the trace viewers accept too).
#pragma once
#include <cstdio>
#include <set>
#include <string>

#include "nanocascade/memory_hooks.h"

namespace nc {

class MemoryTraceWriter : public MemoryHook {
 public:
  explicit MemoryTraceWriter(const std::string& path);
  ~MemoryTraceWriter() override;
  MemoryTraceWriter(const MemoryTraceWriter&) = delete;
  MemoryTraceWriter& operator=(const MemoryTraceWriter&) = delete;

  void on_step(const MemoryStepEvent& ev) override;
  // Writes the closing bracket and closes the file (idempotent).
  void close();
  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& json);

  std::string path_;
  std::FILE* file_ = nullptr;
  bool first_ = true;
  bool wrote_bytes_ = false;
  std::set<int64_t> running_;  // requests with a nonzero counter now
};

}  // namespace nc

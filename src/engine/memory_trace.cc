#include "engine/memory_trace.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace nc {
namespace {

using nlohmann::ordered_json;

constexpr int kPid = 1;

ordered_json counter(const char* name, double ts_us, ordered_json args) {
  return ordered_json{{"name", name}, {"ph", "C"}, {"ts", ts_us},
                      {"pid", kPid},  {"tid", 0},  {"args", std::move(args)}};
}

}  // namespace

MemoryTraceWriter::MemoryTraceWriter(const std::string& path) : path_(path) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, !path.empty(), "memory trace: empty file name");
  file_ = std::fopen(path.c_str(), "w");
  if (!file_) {
    fail_as(ErrorKind::InvalidArgument, "memory trace: cannot write '{}': {}", path,
            std::strerror(errno));
  }
  std::fputs("[\n", file_);
  write_event(ordered_json{{"name", "process_name"},
                           {"ph", "M"},
                           {"pid", kPid},
                           {"args", {{"name", "nanocascade KV cache"}}}}
                  .dump());
  std::fflush(file_);
}

MemoryTraceWriter::~MemoryTraceWriter() {
  close();
}

void MemoryTraceWriter::close() {
  if (!file_) return;
  std::fputs("\n]\n", file_);
  std::fclose(file_);
  file_ = nullptr;
}

void MemoryTraceWriter::write_event(const std::string& json) {
  if (!first_) std::fputs(",\n", file_);
  first_ = false;
  std::fputs(json.c_str(), file_);
}

void MemoryTraceWriter::on_step(const MemoryStepEvent& ev) {
  NC_CHECK(file_ != nullptr, "memory trace: '{}' is already closed", path_);
  const double ts = ev.time_s * 1e6;
  if (!wrote_bytes_) {
    write_event(counter("memory bytes", ts,
                        {{"weights", ev.weight_bytes},
                         {"workspace", ev.workspace_bytes},
                         {"kv_cache", ev.kv_cache_bytes}})
                    .dump());
    wrote_bytes_ = true;
  }
  write_event(
      counter("KV pages", ts,
              {{"free", ev.pages.free}, {"used", ev.pages.used}, {"cached", ev.pages.cached}})
          .dump());
  const PageTransitions& d = ev.delta;
  write_event(counter("page transitions", ts,
                      {{"allocated", d.allocated},
                       {"freed", d.freed},
                       {"cached", d.cached},
                       {"evicted", d.evicted},
                       {"reloaded", d.reloaded},
                       {"restored", d.restored},
                       {"offloaded", d.offloaded},
                       {"dropped", d.dropped}})
                  .dump());
  if (ev.host.total > 0)
    write_event(counter("host KV pages", ts,
                        {{"free", ev.host.total - ev.host.used}, {"used", ev.host.used}})
                    .dump());
  if (!ev.pages_per_level.empty()) {
    ordered_json levels = ordered_json::object();
    for (size_t i = 0; i < ev.pages_per_level.size(); ++i)
      levels["level " + std::to_string(i)] = ev.pages_per_level[i];
    write_event(counter("pages per level", ts, std::move(levels)).dump());
  }
  // One counter track per request; a request that left the running set drops to 0.
  std::set<int64_t> now;
  for (const RequestPages& r : ev.requests) {
    now.insert(r.id);
    const std::string name = "request " + std::to_string(r.id);
    write_event(counter(name.c_str(), ts, {{"pages", r.pages}}).dump());
  }
  for (int64_t id : running_) {
    if (now.count(id)) continue;
    const std::string name = "request " + std::to_string(id);
    write_event(counter(name.c_str(), ts, {{"pages", 0}}).dump());
  }
  running_ = std::move(now);
  if (std::fflush(file_) != 0 || std::ferror(file_)) {
    fail("memory trace: writing '{}' failed: {}", path_, std::strerror(errno));
  }
}

}  // namespace nc

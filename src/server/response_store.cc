#include "server/response_store.h"

#include <utility>
#include <vector>

namespace nc::server {

void ResponseStore::drop(std::unordered_map<std::string, Slot>::iterator it) {
  bytes_ -= it->second.bytes;
  lru_.erase(it->second.age);
  slots_.erase(it);
}

namespace {

// Appends a turn's messages. A turn that starts with calls alone (a request whose input began
// with function_call items) joins them to the assistant message before it, as the request that
// made it read them (responses_request.cc: add_function_call).
void join_turn(nlohmann::ordered_json& out, nlohmann::ordered_json turn) {
  for (size_t i = 0; i < turn.size(); ++i) {
    nlohmann::ordered_json& m = turn[i];
    const bool calls_alone =
        m["role"] == "assistant" && m["content"].is_null() && m.contains("tool_calls");
    if (i == 0 && calls_alone && !out.empty() && out.back()["role"] == "assistant") {
      nlohmann::ordered_json& last = out.back();
      if (!last.contains("tool_calls")) last["tool_calls"] = nlohmann::ordered_json::array();
      for (nlohmann::ordered_json& c : m["tool_calls"]) last["tool_calls"].push_back(std::move(c));
      continue;
    }
    out.push_back(std::move(m));
  }
}

// j serialized, invalid UTF-8 replaced (U+FFFD).
template <class Json>
std::string serialized(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

bool ResponseStore::put(const std::string& id, Entry e) {
  Slot slot;
  slot.parent = std::move(e.parent);
  slot.turn = serialized(e.turn);
  slot.response = serialized(e.response);
  slot.bytes =
      slot.turn.size() + slot.response.size() + id.size() + slot.parent.size() + kEntryOverhead;
  const size_t bytes = slot.bytes;
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = slots_.find(id); it != slots_.end()) drop(it);
  if (bytes > max_bytes_) return false;
  while (bytes_ + bytes > max_bytes_) drop(slots_.find(lru_.back()));
  lru_.push_front(id);
  slot.age = lru_.begin();
  slots_.emplace(id, std::move(slot));
  bytes_ += bytes;
  return true;
}

std::optional<ResponseStore::Entry> ResponseStore::get(const std::string& id) {
  std::string parent, turn, response;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = slots_.find(id);
    if (it == slots_.end()) return std::nullopt;
    lru_.splice(lru_.begin(), lru_, it->second.age);
    parent = it->second.parent;
    turn = it->second.turn;
    response = it->second.response;
  }
  return Entry{std::move(parent), nlohmann::ordered_json::parse(turn),
               nlohmann::json::parse(response)};
}

std::optional<nlohmann::ordered_json> ResponseStore::conversation(const std::string& id,
                                                                  std::string* missing) {
  std::vector<std::string> turns;  // the last response's first
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (std::string at = id; !at.empty();) {
      auto it = slots_.find(at);
      if (it == slots_.end() || turns.size() > slots_.size()) {
        if (missing != nullptr) *missing = at;
        return std::nullopt;
      }
      lru_.splice(lru_.begin(), lru_, it->second.age);
      turns.push_back(it->second.turn);
      at = it->second.parent;
    }
  }
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (auto t = turns.rbegin(); t != turns.rend(); ++t)
    join_turn(out, nlohmann::ordered_json::parse(*t));
  return out;
}

bool ResponseStore::erase(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(id);
  if (it == slots_.end()) return false;
  drop(it);
  return true;
}

size_t ResponseStore::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

size_t ResponseStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return slots_.size();
}

}  // namespace nc::server

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

// j with invalid UTF-8 replaced (U+FFFD), and its serialized size.
template <class Json>
std::pair<Json, size_t> valid_utf8(const Json& j) {
  const std::string text = j.dump(-1, ' ', false, Json::error_handler_t::replace);
  return {Json::parse(text), text.size()};
}

}  // namespace

bool ResponseStore::put(const std::string& id, Entry e) {
  auto [turn, turn_bytes] = valid_utf8(e.turn);
  auto [response, response_bytes] = valid_utf8(e.response);
  e = Entry{std::move(e.parent), std::move(turn), std::move(response)};
  const size_t bytes = turn_bytes + response_bytes + id.size() + e.parent.size();
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = slots_.find(id); it != slots_.end()) drop(it);
  if (bytes > max_bytes_) return false;
  while (bytes_ + bytes > max_bytes_) drop(slots_.find(lru_.back()));
  lru_.push_front(id);
  slots_.emplace(id, Slot{std::move(e), bytes, lru_.begin()});
  bytes_ += bytes;
  return true;
}

std::optional<ResponseStore::Entry> ResponseStore::get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(id);
  if (it == slots_.end()) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second.age);
  return it->second.entry;
}

std::optional<nlohmann::ordered_json> ResponseStore::conversation(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<const nlohmann::ordered_json*> turns;  // the last response's first
  for (std::string at = id; !at.empty();) {
    auto it = slots_.find(at);
    if (it == slots_.end() || turns.size() > slots_.size()) return std::nullopt;
    lru_.splice(lru_.begin(), lru_, it->second.age);
    turns.push_back(&it->second.entry.turn);
    at = it->second.entry.parent;
  }
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (auto t = turns.rbegin(); t != turns.rend(); ++t)
    for (const nlohmann::ordered_json& m : **t) out.push_back(m);
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

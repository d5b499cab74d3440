#include "server/response_store.h"

#include <utility>

namespace nc::server {

void ResponseStore::drop(std::unordered_map<std::string, Slot>::iterator it) {
  bytes_ -= it->second.bytes;
  lru_.erase(it->second.age);
  slots_.erase(it);
}

void ResponseStore::put(const std::string& id, Entry e) {
  const size_t bytes = e.conversation.dump().size() + e.response.dump().size() + id.size();
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = slots_.find(id); it != slots_.end()) drop(it);
  if (bytes > max_bytes_) return;
  while (bytes_ + bytes > max_bytes_) drop(slots_.find(lru_.back()));
  lru_.push_front(id);
  slots_.emplace(id, Slot{std::move(e), bytes, lru_.begin()});
  bytes_ += bytes;
}

std::optional<ResponseStore::Entry> ResponseStore::get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(id);
  if (it == slots_.end()) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second.age);
  return it->second.entry;
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

// The Responses API's stored responses (POST /v1/responses with store, previous_response_id,
// GET and DELETE /v1/responses/{id}): in memory only, bounded in bytes, the least recently used
// dropped first. Nothing survives a restart, and a response dropped for room is as unknown as
// one never stored (a 400 naming previous_response_id), so clients that need a conversation to
// last should send it whole in `input`.
//
// Each entry holds the response object as it was returned, its own turn in chat form
// (server/responses_request.h: its input and its output as an assistant turn) and the id of the
// response it continued, so that a request naming it as previous_response_id continues the chain
// of turns; a chain whose earlier link was dropped is as unknown as a dropped id. Reading a chain
// marks every link recently used. Thread-safe (one mutex); entries are copied out.
//
// Entries are held serialized, so the bound is the memory they take: their text plus
// kEntryOverhead for the map and list nodes and the strings' headers (a JSON document in memory
// takes several times its text). Reading parses them again, outside the lock.
#pragma once
#include <cstddef>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

namespace nc::server {

class ResponseStore {
 public:
  struct Entry {
    std::string parent;           // the response it continued ("" for none)
    nlohmann::ordered_json turn;  // its input and output turn, chat messages
    nlohmann::json response;
  };

  // What an entry costs beside its text: the hash and list nodes and the strings' headers.
  static constexpr size_t kEntryOverhead = 256;

  // max_bytes: the entries' serialized size (and kEntryOverhead each) at most; 0 stores nothing.
  explicit ResponseStore(size_t max_bytes) : max_bytes_(max_bytes) {}

  bool enabled() const { return max_bytes_ > 0; }
  // Stores (or replaces) it; false when it is not kept (larger than the whole store). Text that
  // is not valid UTF-8 (an output cut inside a character) is kept with U+FFFD in its place, so
  // that what is stored always serializes. Never throws but for memory.
  bool put(const std::string& id, Entry e);
  std::optional<Entry> get(const std::string& id);  // and marks it recently used
  // The chain's turns, the first response's first: the conversation a request continuing `id`
  // comes after (a turn that starts with calls alone joins them to the assistant message before
  // it, as its request read them). nullopt when `id` or a link before it is not held; then
  // *missing (when given) is the first id of the chain not held.
  std::optional<nlohmann::ordered_json> conversation(const std::string& id,
                                                     std::string* missing = nullptr);
  bool erase(const std::string& id);
  size_t bytes() const;
  size_t size() const;

 private:
  struct Slot {
    std::string parent, turn, response;  // serialized, valid UTF-8
    size_t bytes = 0;
    std::list<std::string>::iterator age;  // in lru_, the most recently used first
  };
  void drop(std::unordered_map<std::string, Slot>::iterator it);

  const size_t max_bytes_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Slot> slots_;
  std::list<std::string> lru_;
  size_t bytes_ = 0;
};

}  // namespace nc::server

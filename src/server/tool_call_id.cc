#include "server/tool_call_id.h"

#include <algorithm>
#include <cstdint>
#include <random>

#include <fmt/format.h>

namespace nc::server {

namespace {

constexpr std::string_view kAlnum =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr size_t kMistralIdLength = 9;

std::mt19937_64& rng() {
  thread_local std::mt19937_64 r{std::random_device{}()};
  return r;
}

std::string random_id(ToolFormat format) {
  if (format != ToolFormat::Mistral)
    return fmt::format("call_{:016x}{:08x}", rng()(), uint32_t(rng()()));
  std::uniform_int_distribution<size_t> digit(0, kAlnum.size() - 1);
  std::string id(kMistralIdLength, '0');
  for (char& c : id) c = kAlnum[digit(rng())];
  return id;
}

// FNV-1a over the bytes, then splitmix64's finaliser to spread them over all 64 bits (FNV alone
// leaves short, similar ids close together in the low digits).
uint64_t hash_id(std::string_view s) {
  uint64_t h = 14695981039346656037ull;
  for (const unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

bool is_alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

}  // namespace

std::string new_tool_call_id(ToolFormat format, const std::vector<std::string>& taken) {
  std::string id = random_id(format);
  while (std::find(taken.begin(), taken.end(), id) != taken.end()) id = random_id(format);
  return id;
}

std::string new_tool_call_id(const CallIds& ids, std::string_view name,
                             const std::vector<std::string>& taken) {
  if (ids.format != ToolFormat::Kimi) return new_tool_call_id(ids.format, taken);
  // Distinct within the output: K grows with every id given.
  return fmt::format("functions.{}:{}", name, ids.first_index + int(taken.size()));
}

bool tool_call_id_fits(ToolFormat format, std::string_view id) {
  if (format != ToolFormat::Mistral) return true;
  return id.size() == kMistralIdLength && std::all_of(id.begin(), id.end(), is_alnum);
}

std::string fit_tool_call_id(ToolFormat format, std::string_view id) {
  if (tool_call_id_fits(format, id)) return std::string(id);
  uint64_t h = hash_id(id);  // 62^9 < 2^64: nine base-62 digits of the hash
  std::string out(kMistralIdLength, '0');
  for (char& c : out) {
    c = kAlnum[h % kAlnum.size()];
    h /= kAlnum.size();
  }
  return out;
}

}  // namespace nc::server

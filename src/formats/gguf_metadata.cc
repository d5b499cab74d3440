// GGUF metadata getters: typed access to a parsed file's key/value pairs, with errors that name
// the key and the type it holds (gguf.h).
#include "formats/gguf.h"

#include <limits>
#include <variant>

#include "core/error.h"

namespace nc {
namespace {

const char* held_type(const GgufValue& v) {
  switch (v.v.index()) {
    case 0:
      return "unsigned integer";
    case 1:
      return "signed integer";
    case 2:
      return "float";
    case 3:
      return "bool";
    case 4:
      return "string";
    default:
      return "array";
  }
}

int64_t as_int(const GgufValue& v, const std::string& key) {
  if (const auto* u = std::get_if<uint64_t>(&v.v)) {
    if (*u > uint64_t(std::numeric_limits<int64_t>::max()))
      fail_as(ErrorKind::InvalidArgument, "GGUF: metadata '{}': value {} does not fit in int64",
              key, *u);
    return int64_t(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&v.v)) return *i;
  fail_as(ErrorKind::InvalidArgument, "GGUF: metadata '{}' is a {}, expected an integer", key,
          held_type(v));
}

double as_float(const GgufValue& v, const std::string& key) {
  if (const auto* d = std::get_if<double>(&v.v)) return *d;
  if (const auto* u = std::get_if<uint64_t>(&v.v)) return double(*u);
  if (const auto* i = std::get_if<int64_t>(&v.v)) return double(*i);
  fail_as(ErrorKind::InvalidArgument, "GGUF: metadata '{}' is a {}, expected a number", key,
          held_type(v));
}

const GgufArray& as_array(const GgufValue& v, const std::string& key) {
  const auto* a = std::get_if<GgufArray>(&v.v);
  if (!a)
    fail_as(ErrorKind::InvalidArgument, "GGUF: metadata '{}' is a {}, expected an array", key,
            held_type(v));
  return *a;
}

}  // namespace

const GgufValue& GgufFile::get(const std::string& key) const {
  auto it = kv_.find(key);
  if (it == kv_.end())
    fail_as(ErrorKind::InvalidArgument, "GGUF: metadata key '{}' is missing", key);
  return it->second;
}

int64_t GgufFile::get_int(const std::string& key) const {
  return as_int(get(key), key);
}

double GgufFile::get_float(const std::string& key) const {
  return as_float(get(key), key);
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = get(key);
  const auto* b = std::get_if<bool>(&v.v);
  if (!b)
    fail_as(ErrorKind::InvalidArgument, "GGUF: metadata '{}' is a {}, expected a bool", key,
            held_type(v));
  return *b;
}

const std::string& GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = get(key);
  const auto* s = std::get_if<std::string>(&v.v);
  if (!s)
    fail_as(ErrorKind::InvalidArgument, "GGUF: metadata '{}' is a {}, expected a string", key,
            held_type(v));
  return *s;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  std::vector<std::string> out;
  for (const GgufValue& e : as_array(get(key), key)) {
    const auto* s = std::get_if<std::string>(&e.v);
    if (!s)
      fail_as(ErrorKind::InvalidArgument, "GGUF: metadata '{}' holds {} elements, expected strings",
              key, held_type(e));
    out.push_back(*s);
  }
  return out;
}

std::vector<double> GgufFile::get_float_array(const std::string& key) const {
  std::vector<double> out;
  for (const GgufValue& e : as_array(get(key), key)) out.push_back(as_float(e, key));
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  std::vector<int64_t> out;
  for (const GgufValue& e : as_array(get(key), key)) out.push_back(as_int(e, key));
  return out;
}

int64_t GgufFile::get_int(const std::string& key, int64_t dflt) const {
  return has(key) ? get_int(key) : dflt;
}
double GgufFile::get_float(const std::string& key, double dflt) const {
  return has(key) ? get_float(key) : dflt;
}
bool GgufFile::get_bool(const std::string& key, bool dflt) const {
  return has(key) ? get_bool(key) : dflt;
}
std::string GgufFile::get_string(const std::string& key, const std::string& dflt) const {
  return has(key) ? get_string(key) : dflt;
}

}  // namespace nc

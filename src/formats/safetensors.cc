#include "formats/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/dtype.h"
#include "core/error.h"
#include "core/json_file.h"

namespace nc {
namespace {

using json = nlohmann::json;

// A valid header nests three levels deep (root, tensor entry, shape); anything much deeper is
// garbage, and refusing it early keeps hostile input from exhausting the stack.
constexpr int kMaxJsonDepth = 16;

std::string shape_str(const std::vector<int64_t>& s) {
  return fmt::format("[{}]", fmt::join(s, ", "));
}

json parse_header_json(const uint8_t* p, size_t n, const std::string& origin) {
  auto depth_guard = [&](int depth, json::parse_event_t, json&) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, depth <= kMaxJsonDepth,
                "{}: safetensors header nests deeper than {} levels", origin, kMaxJsonDepth);
    return true;
  };
  try {
    return json::parse(p, p + n, depth_guard);
  } catch (const json::exception& e) {
    fail_as(ErrorKind::InvalidArgument, "{}: safetensors header is not valid JSON: {}", origin,
            e.what());
  }
}

// A JSON integer that fits in int64 and is >= 0, else an error naming `what`.
int64_t non_negative_int(const json& v, const std::string& what, const std::string& origin) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    NC_CHECK_AS(ErrorKind::InvalidArgument, u <= uint64_t(std::numeric_limits<int64_t>::max()),
                "{}: {} is too large ({})", origin, what, u);
    return int64_t(u);
  }
  NC_CHECK_AS(ErrorKind::InvalidArgument, v.is_number_integer(),
              "{}: {} must be an integer, got {}", origin, what, v.dump());
  const int64_t i = v.get<int64_t>();
  NC_CHECK_AS(ErrorKind::InvalidArgument, i >= 0, "{}: {} is negative ({})", origin, what, i);
  return i;
}

SafetensorsTensorInfo parse_tensor_entry(const std::string& name, const json& e,
                                         const std::string& origin) {
  const std::string where = fmt::format("tensor '{}'", name);
  NC_CHECK_AS(ErrorKind::InvalidArgument, e.is_object(), "{}: {} entry must be a JSON object",
              origin, where);
  SafetensorsTensorInfo t;
  t.name = name;
  auto dt = e.find("dtype");
  NC_CHECK_AS(ErrorKind::InvalidArgument, dt != e.end() && dt->is_string(),
              "{}: {} has no string 'dtype'", origin, where);
  t.dtype = dt->get<std::string>();
  auto sh = e.find("shape");
  NC_CHECK_AS(ErrorKind::InvalidArgument, sh != e.end() && sh->is_array(),
              "{}: {} has no 'shape' array", origin, where);
  for (const json& d : *sh) t.shape.push_back(non_negative_int(d, where + " shape entry", origin));
  auto off = e.find("data_offsets");
  NC_CHECK_AS(ErrorKind::InvalidArgument, off != e.end() && off->is_array() && off->size() == 2,
              "{}: {} needs 'data_offsets' as [begin, end]", origin, where);
  t.begin = uint64_t(non_negative_int((*off)[0], where + " data_offsets begin", origin));
  t.end = uint64_t(non_negative_int((*off)[1], where + " data_offsets end", origin));
  return t;
}

// Checks dtype, the byte count against shape * element size, and the range against the buffer.
void check_tensor_extent(const SafetensorsTensorInfo& t, uint64_t data_size,
                         const std::string& origin) {
  size_t esize;
  try {
    esize = safetensors_dtype_size(t.dtype);
  } catch (const Error& e) {
    fail_as(e.kind(), "{}: tensor '{}': {}", origin, t.name, e.what());
  }
  uint64_t bytes = esize;
  for (int64_t d : t.shape) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, !__builtin_mul_overflow(bytes, uint64_t(d), &bytes),
                "{}: tensor '{}' shape {} overflows", origin, t.name, shape_str(t.shape));
  }
  NC_CHECK_AS(ErrorKind::InvalidArgument, t.begin <= t.end,
              "{}: tensor '{}' data_offsets [{}, {}] end before begin", origin, t.name, t.begin,
              t.end);
  NC_CHECK_AS(ErrorKind::InvalidArgument, t.end <= data_size,
              "{}: tensor '{}' data_offsets [{}, {}] run past the data section ({} bytes)", origin,
              t.name, t.begin, t.end, data_size);
  NC_CHECK_AS(ErrorKind::InvalidArgument, t.end - t.begin == bytes,
              "{}: tensor '{}' has {} bytes but dtype {} and shape {} need {}", origin, t.name,
              t.end - t.begin, t.dtype, shape_str(t.shape), bytes);
}

void check_no_overlap(const std::vector<SafetensorsTensorInfo>& sorted, const std::string& origin) {
  for (size_t i = 1; i < sorted.size(); ++i) {
    const auto& a = sorted[i - 1];
    const auto& b = sorted[i];
    NC_CHECK_AS(ErrorKind::InvalidArgument, a.end <= b.begin,
                "{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", origin, a.name, a.begin,
                a.end, b.name, b.begin, b.end);
  }
}

template <typename Convert>
void convert_elements(const uint8_t* src, size_t esize, int64_t n, float* dst, Convert cvt) {
  for (int64_t i = 0; i < n; ++i) dst[i] = cvt(src + size_t(i) * esize);
}

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  static const std::map<std::string, size_t> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  auto it = kSizes.find(dtype);
  NC_CHECK_AS(ErrorKind::Unsupported, it != kSizes.end(), "unknown safetensors dtype '{}'", dtype);
  return it->second;
}

SafetensorsFile SafetensorsFile::parse(const uint8_t* data, size_t size,
                                       const std::string& origin) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, size >= 8,
              "{}: {} bytes is too small for a safetensors file (need an 8-byte header "
              "length)",
              origin, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];  // little-endian on every host
  NC_CHECK_AS(ErrorKind::InvalidArgument, n <= kMaxHeaderBytes,
              "{}: safetensors header length {} exceeds the {}-byte limit", origin, n,
              kMaxHeaderBytes);
  NC_CHECK_AS(ErrorKind::InvalidArgument, n <= size - 8,
              "{}: safetensors header length {} runs past the end of the file ({} "
              "bytes): truncated or not a safetensors file",
              origin, n, size);
  const json header = parse_header_json(data + 8, size_t(n), origin);
  NC_CHECK_AS(ErrorKind::InvalidArgument, header.is_object(),
              "{}: safetensors header must be a JSON object", origin);

  SafetensorsFile f;
  f.origin_ = origin;
  f.data_ = data + 8 + n;
  f.data_size_ = size - 8 - n;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;
      NC_CHECK_AS(ErrorKind::InvalidArgument, value.is_object(),
                  "{}: __metadata__ must be an object", origin);
      for (const auto& [mk, mv] : value.items()) {
        NC_CHECK_AS(ErrorKind::InvalidArgument, mv.is_string(),
                    "{}: __metadata__ value of '{}' must be a string", origin, mk);
        f.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    SafetensorsTensorInfo t = parse_tensor_entry(key, value, origin);
    check_tensor_extent(t, f.data_size_, origin);
    f.tensors_.push_back(std::move(t));
  }
  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  check_no_overlap(f.tensors_, origin);
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.by_name_[f.tensors_[i].name] = i;
  return f;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  NC_CHECK_AS(ErrorKind::NotFound, fd >= 0, "cannot open safetensors file {}: {}", path,
              std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail_as(ErrorKind::InvalidArgument, "{} is not a regular file", path);
  }
  const size_t size = size_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail_as(ErrorKind::InvalidArgument, "{}: {} bytes is too small for a safetensors file", path,
            size);
  }
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  NC_CHECK(addr != MAP_FAILED, "cannot mmap {}: {}", path, std::strerror(map_errno));
  std::shared_ptr<void> mapping(addr, [size](void* p) { ::munmap(p, size); });
  SafetensorsFile f = parse(static_cast<const uint8_t*>(addr), size, path);
  f.mapping_ = std::move(mapping);
  return f;
}

const SafetensorsTensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

HostTensor SafetensorsFile::load_f32(const std::string& name) const {
  const SafetensorsTensorInfo* t = find(name);
  NC_CHECK_AS(ErrorKind::NotFound, t != nullptr, "{}: no tensor named '{}'", origin_, name);
  return load_f32(*t);
}

HostTensor SafetensorsFile::load_f32(const SafetensorsTensorInfo& t) const {
  HostTensor out;
  out.shape = t.shape;
  const int64_t n = out.numel();  // fits: validated against the byte range at parse time
  out.data.resize(size_t(n));
  const uint8_t* src = tensor_data(t);
  // Data need not be aligned (the header length is arbitrary), so read through memcpy.
  if (t.dtype == "F32") {
    if (n > 0) std::memcpy(out.data.data(), src, size_t(n) * 4);
  } else if (t.dtype == "F16") {
    convert_elements(src, 2, n, out.data.data(), [](const uint8_t* p) {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return f16_to_f32(h);
    });
  } else if (t.dtype == "BF16") {
    convert_elements(src, 2, n, out.data.data(), [](const uint8_t* p) {
      uint16_t b;
      std::memcpy(&b, p, 2);
      return bf16_to_f32(b);
    });
  } else {
    fail_as(ErrorKind::Unsupported,
            "{}: tensor '{}' has dtype {}; only F32, F16 and BF16 can be loaded as weights",
            origin_, t.name, t.dtype);
  }
  return out;
}

HostTensor SafetensorsFile::load_weight(const SafetensorsTensorInfo& t) const {
  if (t.dtype != "F8_E4M3") return load_f32(t);
  HostTensor out;
  out.shape = t.shape;
  out.dtype = DType::F8E4M3;
  const uint8_t* src = tensor_data(t);
  out.raw.assign(src, src + out.numel());  // one byte a value, validated at parse time
  return out;
}

namespace {

// Shard names come from a file we do not trust: keep them inside the checkpoint folder.
void check_shard_name(const std::string& shard, const std::string& index) {
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              !shard.empty() && shard.find('/') == std::string::npos &&
                  shard.find('\\') == std::string::npos && shard != "." && shard != "..",
              "{}: shard file name '{}' must be a plain file name in the checkpoint folder", index,
              shard);
}

WeightMap load_sharded(const std::filesystem::path& dir, const std::filesystem::path& index) {
  const json j = read_json_file(index);
  auto wm = j.find("weight_map");
  NC_CHECK_AS(ErrorKind::InvalidArgument, j.is_object() && wm != j.end() && wm->is_object(),
              "{}: missing the 'weight_map' object", index.string());
  std::map<std::string, std::vector<std::string>> by_shard;
  for (const auto& [name, shard] : wm->items()) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, shard.is_string(),
                "{}: shard of tensor '{}' must be a string", index.string(), name);
    const std::string s = shard.get<std::string>();
    check_shard_name(s, index.string());
    by_shard[s].push_back(name);
  }
  NC_CHECK_AS(ErrorKind::InvalidArgument, !by_shard.empty(), "{}: weight_map is empty",
              index.string());
  WeightMap w;
  for (const auto& [shard, names] : by_shard) {
    const SafetensorsFile f = SafetensorsFile::open((dir / shard).string());
    for (const std::string& name : names) {
      const SafetensorsTensorInfo* t = f.find(name);
      NC_CHECK_AS(ErrorKind::InvalidArgument, t != nullptr,
                  "{}: tensor '{}' is listed in {} but absent from the shard",
                  (dir / shard).string(), name, index.filename().string());
      w[name] = f.load_weight(*t);
    }
  }
  return w;
}

}  // namespace

WeightMap load_safetensors_dir(const std::string& dir_str) {
  const std::filesystem::path dir(dir_str);
  const auto index = dir / "model.safetensors.index.json";
  const auto single = dir / "model.safetensors";
  if (std::filesystem::exists(index)) return load_sharded(dir, index);
  NC_CHECK_AS(ErrorKind::NotFound, std::filesystem::exists(single),
              "{} has neither model.safetensors nor "
              "model.safetensors.index.json",
              dir_str);
  const SafetensorsFile f = SafetensorsFile::open(single.string());
  WeightMap w;
  for (const auto& t : f.tensors()) w[t.name] = f.load_weight(t);
  return w;
}

}  // namespace nc

// GGUF parsing: header, metadata, tensor infos. Every read is bounds-checked against the buffer,
// and every count is checked against the bytes left before anything is allocated for it.
#include "formats/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <set>

#include "core/error.h"

namespace nc {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 8;  // nested arrays deeper than this are surely garbage

enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

const char* value_type_name(uint32_t t) {
  static const char* const names[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                      "int32",  "float32", "bool",   "string", "array",
                                      "uint64", "int64",   "float64"};
  return t <= 12 ? names[t] : "unknown";
}

// Smallest encoding of one value of type t, used to bound counts before allocating.
uint64_t min_value_size(ValueType t) {
  switch (t) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::BOOL:
      return 1;
    case ValueType::U16:
    case ValueType::I16:
      return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32:
      return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64:
      return 8;
    case ValueType::STRING:
      return 8;  // the length
    case ValueType::ARRAY:
      return 12;  // element type + count
  }
  return 1;
}

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, const char* what) const {
    if (n > remaining())
      fail_as(ErrorKind::InvalidArgument,
              "GGUF: truncated file: {} needs {} bytes at offset {}, only {} left", what, n, pos_,
              remaining());
  }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      fail_as(ErrorKind::InvalidArgument,
              "GGUF: {} has length {} but only {} bytes are left in the file (offset {})", what,
              len, remaining(), pos_);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), size_t(len));
    pos_ += size_t(len);
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

GgufValue read_value(Reader& r, uint32_t type, const std::string& key, int depth);

GgufArray read_array(Reader& r, const std::string& key, int depth) {
  if (depth >= kMaxArrayDepth)
    fail_as(ErrorKind::InvalidArgument, "GGUF: metadata '{}': arrays nested deeper than {} levels",
            key, kMaxArrayDepth);
  uint32_t elem_type = r.read<uint32_t>("array element type");
  if (elem_type > uint32_t(ValueType::F64))
    fail_as(ErrorKind::InvalidArgument, "GGUF: metadata '{}': unknown array element type {}", key,
            elem_type);
  uint64_t count = r.read<uint64_t>("array length");
  uint64_t min_size = min_value_size(ValueType(elem_type));
  if (count > r.remaining() / min_size)
    fail_as(ErrorKind::InvalidArgument,
            "GGUF: metadata '{}': array of {} {} elements cannot fit in the {} bytes left", key,
            count, value_type_name(elem_type), r.remaining());
  GgufArray arr;
  arr.reserve(size_t(count));
  for (uint64_t i = 0; i < count; ++i) arr.push_back(read_value(r, elem_type, key, depth + 1));
  return arr;
}

GgufValue read_value(Reader& r, uint32_t type, const std::string& key, int depth) {
  GgufValue out;
  switch (ValueType(type)) {
    case ValueType::U8:
      out.v = uint64_t(r.read<uint8_t>("uint8 value"));
      break;
    case ValueType::I8:
      out.v = int64_t(r.read<int8_t>("int8 value"));
      break;
    case ValueType::U16:
      out.v = uint64_t(r.read<uint16_t>("uint16 value"));
      break;
    case ValueType::I16:
      out.v = int64_t(r.read<int16_t>("int16 value"));
      break;
    case ValueType::U32:
      out.v = uint64_t(r.read<uint32_t>("uint32 value"));
      break;
    case ValueType::I32:
      out.v = int64_t(r.read<int32_t>("int32 value"));
      break;
    case ValueType::U64:
      out.v = r.read<uint64_t>("uint64 value");
      break;
    case ValueType::I64:
      out.v = r.read<int64_t>("int64 value");
      break;
    case ValueType::F32:
      out.v = double(r.read<float>("float32 value"));
      break;
    case ValueType::F64:
      out.v = r.read<double>("float64 value");
      break;
    case ValueType::BOOL: {
      uint8_t b = r.read<uint8_t>("bool value");
      if (b > 1)
        fail_as(ErrorKind::InvalidArgument, "GGUF: metadata '{}': bool value {} is neither 0 nor 1",
                key, b);
      out.v = b == 1;
      break;
    }
    case ValueType::STRING:
      out.v = r.read_string("string value");
      break;
    case ValueType::ARRAY:
      out.v = read_array(r, key, depth);
      break;
    default:
      fail_as(ErrorKind::InvalidArgument, "GGUF: metadata '{}': unknown value type {}", key, type);
  }
  return out;
}

bool known_type(uint32_t t) {
  switch (GgmlType(t)) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q8_0:
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
    case GgmlType::Q8_K:
    case GgmlType::I8:
    case GgmlType::I16:
    case GgmlType::I32:
    case GgmlType::I64:
    case GgmlType::F64:
    case GgmlType::BF16:
      return true;
    case GgmlType::Q8_1:  // only an in-memory type of ggml; never valid in a file
      return false;
  }
  return false;
}

GgufTensorInfo read_tensor_info(Reader& r) {
  GgufTensorInfo t;
  t.name = r.read_string("tensor name");
  uint32_t n_dims = r.read<uint32_t>("tensor n_dims");
  if (n_dims == 0 || n_dims > kMaxDims)
    fail_as(ErrorKind::InvalidArgument, "GGUF: tensor '{}': n_dims {} is outside 1..{}", t.name,
            n_dims, kMaxDims);
  int64_t numel = 1;
  for (uint32_t i = 0; i < n_dims; ++i) {
    uint64_t d = r.read<uint64_t>("tensor dimension");
    if (d == 0 || d > uint64_t(std::numeric_limits<int64_t>::max()))
      fail_as(ErrorKind::InvalidArgument, "GGUF: tensor '{}': dimension {} has invalid size {}",
              t.name, i, d);
    if (__builtin_mul_overflow(numel, int64_t(d), &numel))
      fail_as(ErrorKind::InvalidArgument, "GGUF: tensor '{}': element count overflows", t.name);
    t.ne.push_back(int64_t(d));
  }
  uint32_t type = r.read<uint32_t>("tensor type");
  if (!known_type(type))
    fail_as(ErrorKind::Unsupported, "GGUF: tensor '{}': unknown or unsupported ggml type {}",
            t.name, type);
  t.type = GgmlType(type);
  GgmlBlock blk = ggml_block(t.type);
  if (t.ne[0] % blk.elems != 0)
    fail_as(ErrorKind::InvalidArgument,
            "GGUF: tensor '{}': first dimension {} is not a multiple of the {} block size {}",
            t.name, t.ne[0], ggml_type_name(t.type), blk.elems);
  int64_t nbytes;
  if (__builtin_mul_overflow(numel / blk.elems, blk.bytes, &nbytes))
    fail_as(ErrorKind::InvalidArgument, "GGUF: tensor '{}': byte size overflows", t.name);
  t.nbytes = uint64_t(nbytes);
  t.offset = r.read<uint64_t>("tensor offset");
  return t;
}

}  // namespace

GgufFile GgufFile::parse(const uint8_t* data, size_t size) {
  Reader r(data, size);
  GgufFile f;
  uint32_t magic = r.read<uint32_t>("magic");
  if (magic != kMagic)
    fail_as(ErrorKind::InvalidArgument, "GGUF: bad magic 0x{:08x} (not a GGUF file)", magic);
  f.version_ = r.read<uint32_t>("version");
  if (f.version_ == 1)
    fail_as(ErrorKind::Unsupported, "GGUF: version 1 is not supported (only versions 2 and 3)");
  if (f.version_ != 2 && f.version_ != 3) {
    if (f.version_ == 0x02000000 || f.version_ == 0x03000000)
      fail_as(ErrorKind::Unsupported, "GGUF: big-endian files are not supported");
    fail_as(ErrorKind::Unsupported, "GGUF: unsupported version {} (only versions 2 and 3)",
            f.version_);
  }
  uint64_t n_tensors = r.read<uint64_t>("tensor count");
  uint64_t n_kv = r.read<uint64_t>("metadata count");
  // A key-value pair takes at least 13 bytes, a tensor info at least 32.
  if (n_kv > r.remaining() / 13)
    fail_as(ErrorKind::InvalidArgument, "GGUF: metadata count {} cannot fit in the {} bytes left",
            n_kv, r.remaining());
  if (n_tensors > r.remaining() / 32)
    fail_as(ErrorKind::InvalidArgument, "GGUF: tensor count {} cannot fit in the {} bytes left",
            n_tensors, r.remaining());

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.read_string("metadata key");
    uint32_t type = r.read<uint32_t>("metadata value type");
    if (type > uint32_t(ValueType::F64))
      fail_as(ErrorKind::InvalidArgument, "GGUF: metadata '{}': unknown value type {}", key, type);
    GgufValue v = read_value(r, type, key, 0);
    if (!f.kv_.emplace(key, std::move(v)).second)
      fail_as(ErrorKind::InvalidArgument, "GGUF: duplicate metadata key '{}'", key);
  }

  uint64_t alignment = kDefaultAlignment;
  if (auto it = f.kv_.find("general.alignment"); it != f.kv_.end()) {
    const auto* a = std::get_if<uint64_t>(&it->second.v);
    if (!a || *a == 0 || (*a & (*a - 1)) != 0 || *a > (1u << 30))
      fail_as(ErrorKind::InvalidArgument,
              "GGUF: general.alignment must be an unsigned power of two");
    alignment = *a;
  }

  f.tensors_.reserve(size_t(n_tensors));
  std::set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t = read_tensor_info(r);
    if (!names.insert(t.name).second)
      fail_as(ErrorKind::InvalidArgument, "GGUF: duplicate tensor name '{}'", t.name);
    if (t.offset % alignment != 0)
      fail_as(ErrorKind::InvalidArgument,
              "GGUF: tensor '{}': offset {} is not a multiple of the alignment {}", t.name,
              t.offset, alignment);
    f.tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment after the tensor infos.
  uint64_t data_start = (uint64_t(r.pos()) + alignment - 1) / alignment * alignment;
  if (data_start > size) {
    if (!f.tensors_.empty())
      fail_as(ErrorKind::InvalidArgument,
              "GGUF: truncated file: data section starts at {} but the file has {} bytes",
              data_start, size);
    data_start = size;  // no tensors: a missing padding is harmless
  }
  f.alignment_ = alignment;
  f.data_offset_ = data_start;
  f.data_section_ = data + data_start;
  f.data_size_ = size - data_start;
  for (const auto& t : f.tensors_) {
    if (t.offset > f.data_size_ || t.nbytes > f.data_size_ - t.offset)
      fail_as(ErrorKind::InvalidArgument,
              "GGUF: tensor '{}': data [{}, {}) lies outside the data section of {} bytes", t.name,
              t.offset, t.offset + t.nbytes, f.data_size_);
  }
  return f;
}

GgufFile GgufFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    fail_as(ErrorKind::NotFound, "GGUF: cannot open '{}': {}", path, std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail("GGUF: cannot stat '{}': {}", path, std::strerror(e));
  }
  size_t size = size_t(st.st_size);
  if (size == 0) {
    ::close(fd);
    fail_as(ErrorKind::InvalidArgument, "GGUF: '{}' is empty", path);
  }
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) fail("GGUF: cannot mmap '{}': {}", path, std::strerror(e));
  std::shared_ptr<void> mapping(p, [size](void* q) { munmap(q, size); });
  try {
    GgufFile f = parse(static_cast<const uint8_t*>(p), size);
    f.mapping_ = std::move(mapping);
    return f;
  } catch (const Error& err) {
    fail_as(err.kind(), "{} (in '{}')", err.what(), path);
  }
}

// ---- tensors ----

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const uint8_t* GgufFile::tensor_data(const GgufTensorInfo& t) const {
  // Re-checked so that a hand-made GgufTensorInfo cannot read outside the data section.
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              t.offset <= data_size_ && t.nbytes <= data_size_ - t.offset,
              "GGUF: tensor '{}' lies outside the data section", t.name);
  return data_section_ + t.offset;
}

namespace {

// HF shape order (reversed ne) and the element count, checked against the stored byte size.
std::vector<int64_t> checked_hf_shape(const GgufTensorInfo& t, int64_t* numel) {
  std::vector<int64_t> shape;
  int64_t n = 1;
  for (auto it = t.ne.rbegin(); it != t.ne.rend(); ++it) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, *it > 0 && !__builtin_mul_overflow(n, *it, &n),
                "GGUF: tensor '{}' has an invalid shape", t.name);
    shape.push_back(*it);
  }
  GgmlBlock blk = ggml_block(t.type);
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              n % blk.elems == 0 && uint64_t(n / blk.elems * blk.bytes) == t.nbytes,
              "GGUF: tensor '{}': size {} does not match its shape and type", t.name, t.nbytes);
  *numel = n;
  return shape;
}

}  // namespace

HostTensor GgufFile::load_f32(const GgufTensorInfo& t) const {
  const uint8_t* src = tensor_data(t);
  HostTensor out;
  int64_t n = 0;
  out.shape = checked_hf_shape(t, &n);
  out.data.resize(size_t(n));
  dequantize(t.type, src, out.data.data(), n);
  return out;
}

HostTensor GgufFile::load_raw(const GgufTensorInfo& t) const {
  const std::optional<DType> dt = dtype_for_ggml(t.type);
  if (!dt || *dt == DType::F32) return load_f32(t);
  const uint8_t* src = tensor_data(t);
  HostTensor out;
  int64_t n = 0;
  out.shape = checked_hf_shape(t, &n);
  out.dtype = *dt;
  out.raw.assign(src, src + t.nbytes);
  return out;
}

HostTensor dequantized(const HostTensor& t) {
  if (!t.is_raw()) return t;
  const int64_t n = t.numel();
  NC_CHECK(t.raw.size() == dtype_bytes(t.dtype, n), "dequantized: {} bytes of {} for {} values",
           t.raw.size(), dtype_name(t.dtype), n);
  HostTensor out;
  out.shape = t.shape;
  out.data.resize(size_t(n));
  dequantize(ggml_type_for(t.dtype), t.raw.data(), out.data.data(), n);
  return out;
}

}  // namespace nc

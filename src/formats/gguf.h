// GGUF reader (versions 2 and 3): metadata of every type, tensor infos, data through mmap, and
// dequantization to float32. Every malformed file gives an nc::Error, never a crash.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/host_tensor.h"

namespace nc {

// GGML tensor types, with their on-disk ids.
// clang-format off
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, I8 = 24, I16 = 25,
  I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
};
// clang-format on

// One metadata value. Arrays hold their elements (nested arrays are allowed by the format).
struct GgufValue;
using GgufArray = std::vector<GgufValue>;
struct GgufValue {
  std::variant<uint64_t, int64_t, double, bool, std::string, GgufArray> v;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // GGML order: ne[0] is the innermost (fastest) dimension
  GgmlType type;
  uint64_t offset;  // from the start of the data section
  uint64_t nbytes;
};

class GgufFile {
 public:
  // Opens and validates the whole header; data stays mapped until the object dies.
  static GgufFile open(const std::string& path);
  // Parses from memory the caller keeps alive (the fuzz target and tests use this).
  static GgufFile parse(const uint8_t* data, size_t size);

  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  bool has(const std::string& key) const { return kv_.count(key) > 0; }
  // The raw value; throws nc::Error naming the key when it is missing.
  const GgufValue& get(const std::string& key) const;
  // Alignment of tensor data (general.alignment, default 32) and where the data section starts.
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }

  // Typed getters: throw nc::Error naming the key when missing or of another type.
  // Integer getters accept any integer type that fits.
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // accepts integers too
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<double> get_float_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;
  // Same, with a default when the key is absent (still an error when present with a wrong type).
  int64_t get_int(const std::string& key, int64_t dflt) const;
  double get_float(const std::string& key, double dflt) const;
  bool get_bool(const std::string& key, bool dflt) const;
  std::string get_string(const std::string& key, const std::string& dflt) const;

  const GgufTensorInfo* find_tensor(const std::string& name) const;
  const uint8_t* tensor_data(const GgufTensorInfo& t) const;
  // Dequantized copy in HF shape order (reversed ne: [ne1, ne0] for a matrix).
  HostTensor load_f32(const GgufTensorInfo& t) const;
  // The tensor as the file stores it where a DType holds that format (dtype_for_ggml: F16,
  // BF16, the block types): its bytes copied into HostTensor::raw, rows in file order; F32 and
  // every other type come as load_f32 gives them.
  HostTensor load_raw(const GgufTensorInfo& t) const;

 private:
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensorInfo> tensors_;
  const uint8_t* data_section_ = nullptr;
  uint64_t data_size_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::shared_ptr<void> mapping_;
};

// Block geometry of a type: elements per block and bytes per block. Throws for unknown types.
struct GgmlBlock {
  int64_t elems;
  int64_t bytes;
};
GgmlBlock ggml_block(GgmlType t);
const char* ggml_type_name(GgmlType t);
// Dequantizes n elements (n a multiple of the block size) of type t from src into dst.
void dequantize(GgmlType t, const uint8_t* src, float* dst, int64_t n);

// The DType a GGML type is kept as without conversion (F32, F16, BF16 and the block types of
// core/dtype.h), or nullopt when it must be dequantized; and back.
std::optional<DType> dtype_for_ggml(GgmlType t);
GgmlType ggml_type_for(DType t);  // throws nc::Error for I32

// A float32 copy of t: its values when it is float32 already, else its raw rows dequantized.
HostTensor dequantized(const HostTensor& t);

}  // namespace nc

// safetensors reader: an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the data. Files are mmapped; F32, F16 and BF16 tensors load
// as float32 HostTensors. Every malformed file gives an nc::Error naming the problem, never a
// crash.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/host_tensor.h"

namespace nc {

struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype;           // as written in the file: "F32", "BF16", "I64", ...
  std::vector<int64_t> shape;  // row-major, outermost first
  uint64_t begin = 0;          // byte range in the data section (after the header)
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Largest header accepted (the reference implementation uses the same limit).
  static constexpr uint64_t kMaxHeaderBytes = 100u << 20;

  // Opens, maps and validates the file; the data stays mapped until the object (and every copy
  // of it) dies.
  static SafetensorsFile open(const std::string& path);
  // Parses a buffer that the caller keeps alive (tests and the fuzz target use this). `origin`
  // names the buffer in error messages.
  static SafetensorsFile parse(const uint8_t* data, size_t size,
                               const std::string& origin = "<memory>");

  // Tensors in the order of their data (by offset).
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  // The optional "__metadata__" string map.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsTensorInfo* find(const std::string& name) const;
  const uint8_t* tensor_data(const SafetensorsTensorInfo& t) const { return data_ + t.begin; }

  // Float32 copy of an F32, F16 or BF16 tensor; other dtypes throw naming dtype and tensor.
  HostTensor load_f32(const SafetensorsTensorInfo& t) const;
  // Same, by name; throws naming the tensor when absent.
  HostTensor load_f32(const std::string& name) const;
  // As load_f32, except that an F8_E4M3 tensor (an FP8 checkpoint's weight) comes raw: dtype
  // F8E4M3, its e4m3 codes in `raw` (its scales are other tensors; model/fp8_load.h).
  HostTensor load_weight(const SafetensorsTensorInfo& t) const;

 private:
  std::string origin_;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
  const uint8_t* data_ = nullptr;  // start of the data section
  uint64_t data_size_ = 0;
  std::shared_ptr<void> mapping_;
};

// Bytes per element of a safetensors dtype name; throws for names it does not know.
size_t safetensors_dtype_size(const std::string& dtype);

// Reads the weights of a Hugging Face checkpoint folder: model.safetensors, or the shards listed
// by model.safetensors.index.json ("weight_map": tensor name -> shard file). Every tensor is
// converted to float32.
WeightMap load_safetensors_dir(const std::string& dir);

}  // namespace nc

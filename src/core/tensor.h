// Tensor: a typed, shaped view of memory on a device. It may own its storage (shared) or view
// memory owned elsewhere (weights in an mmap, a backend's workspace). Views are contiguous or
// strided; ops that need contiguity check it and say so.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace nc {

enum class Device : uint8_t { CPU, CUDA };

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  // A contiguous view of `data` (not owned).
  Tensor(void* data, Shape shape, DType dtype, Device device = Device::CPU);
  // A strided view of `data` (not owned); strides are in elements.
  Tensor(void* data, Shape shape, Shape strides, DType dtype, Device device = Device::CPU);

  // Host tensor that owns zero-initialised memory (64-byte aligned).
  static Tensor empty_host(Shape shape, DType dtype);
  // Wraps memory with a deleter; the tensor (and its views) keep it alive.
  static Tensor adopt(std::shared_ptr<void> storage, Shape shape, DType dtype, Device device);

  bool defined() const { return data_ != nullptr || !shape_.empty(); }
  void* data() const { return data_; }
  template <typename T>
  T* ptr() const {
    check_type(sizeof(T));
    return static_cast<T*>(data_);
  }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const;
  size_t nbytes() const { return dtype_bytes(dtype_, numel()); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool is_contiguous() const;

  // Same memory, new shape (contiguous only; one dimension may be -1).
  Tensor view(Shape shape) const;
  // Rows [begin, end) of dimension 0.
  Tensor slice(int64_t begin, int64_t end) const;

  // Checks used by ops: throw nc::Error naming `what` when they fail.
  void expect_shape(const Shape& s, const char* what) const;
  void expect_dtype(DType t, const char* what) const;
  void expect_device(Device d, const char* what) const;
  void expect_contiguous(const char* what) const;

 private:
  void check_type(size_t elem_size) const;

  void* data_ = nullptr;
  Shape shape_;
  Shape strides_;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  std::shared_ptr<void> storage_;  // null for non-owning views
};

}  // namespace nc

#include "core/tensor.h"

#include <fmt/ranges.h>

#include <sys/mman.h>
#include <cstdlib>
#include <cstring>

namespace nc {

std::string shape_str(const Shape& s) {
  return fmt::format("[{}]", fmt::join(s, ", "));
}

static Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t acc = 1;
  for (int i = int(shape.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

static void check_dims(const Shape& shape) {
  for (int64_t d : shape)
    NC_CHECK(d >= 0, "tensor: negative dimension in shape {}", shape_str(shape));
}

Tensor::Tensor(void* data, Shape shape, DType dtype, Device device)
    : data_(data), shape_(std::move(shape)), dtype_(dtype), device_(device) {
  check_dims(shape_);
  strides_ = contiguous_strides(shape_);
}

Tensor::Tensor(void* data, Shape shape, Shape strides, DType dtype, Device device)
    : data_(data),
      shape_(std::move(shape)),
      strides_(std::move(strides)),
      dtype_(dtype),
      device_(device) {
  check_dims(shape_);
  NC_CHECK(shape_.size() == strides_.size(), "tensor: shape {} and strides {} differ in rank",
           shape_str(shape_), shape_str(strides_));
}

namespace {
// Host tensors this large are mapped instead of allocated and zero-filled.
constexpr size_t kLazyZeroBytes = size_t(4) << 20;
}  // namespace

Tensor Tensor::empty_host(Shape shape, DType dtype) {
  check_dims(shape);
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  size_t bytes = (dtype_bytes(dtype, n) + 63) / 64 * 64;
  if (bytes >= kLazyZeroBytes) {
    // Anonymous pages read as zeros and take memory only when first written, so a large KV
    // pool costs resident memory only for the pages requests use.
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    NC_CHECK(p != MAP_FAILED, "tensor: out of host memory mapping {} bytes", bytes);
    return adopt(std::shared_ptr<void>(p, [bytes](void* q) { munmap(q, bytes); }), std::move(shape),
                 dtype, Device::CPU);
  }
  void* p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
  NC_CHECK(p != nullptr, "tensor: out of host memory allocating {} bytes", bytes);
  std::memset(p, 0, bytes == 0 ? 64 : bytes);
  return adopt(std::shared_ptr<void>(p, std::free), std::move(shape), dtype, Device::CPU);
}

Tensor Tensor::adopt(std::shared_ptr<void> storage, Shape shape, DType dtype, Device device) {
  Tensor t(storage.get(), std::move(shape), dtype, device);
  t.storage_ = std::move(storage);
  return t;
}

int64_t Tensor::dim(int i) const {
  int n = ndim();
  if (i < 0) i += n;
  NC_CHECK(i >= 0 && i < n, "tensor: dimension {} out of range for shape {}", i, shape_str(shape_));
  return shape_[i];
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

bool Tensor::is_contiguous() const {
  return strides_ == contiguous_strides(shape_);
}

Tensor Tensor::view(Shape shape) const {
  expect_contiguous("view");
  int64_t known = 1;
  int infer = -1;
  for (int i = 0; i < int(shape.size()); ++i) {
    if (shape[i] == -1) {
      NC_CHECK(infer < 0, "tensor: view {} has more than one -1", shape_str(shape));
      infer = i;
    } else {
      NC_CHECK(shape[i] >= 0, "tensor: view {} has a negative dimension", shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    NC_CHECK(known > 0 && numel() % known == 0, "tensor: cannot view {} as {}", shape_str(shape_),
             shape_str(shape));
    shape[infer] = numel() / known;
  }
  Tensor t = *this;
  t.shape_ = std::move(shape);
  NC_CHECK(t.numel() == numel(), "tensor: cannot view {} ({} elements) as {}", shape_str(shape_),
           numel(), shape_str(t.shape_));
  t.strides_ = contiguous_strides(t.shape_);
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  NC_CHECK(ndim() >= 1, "tensor: slice of a scalar");
  NC_CHECK(0 <= begin && begin <= end && end <= shape_[0],
           "tensor: slice [{}, {}) out of range for {}", begin, end, shape_str(shape_));
  Tensor t = *this;
  t.data_ = static_cast<char*>(data_) + begin * strides_[0] * int64_t(dtype_size(dtype_));
  t.shape_[0] = end - begin;
  return t;
}

void Tensor::expect_shape(const Shape& s, const char* what) const {
  NC_CHECK(shape_ == s, "{}: expected shape {}, got {}", what, shape_str(s), shape_str(shape_));
}
void Tensor::expect_dtype(DType t, const char* what) const {
  NC_CHECK(dtype_ == t, "{}: expected dtype {}, got {}", what, dtype_name(t), dtype_name(dtype_));
}
void Tensor::expect_device(Device d, const char* what) const {
  NC_CHECK(device_ == d, "{}: tensor is on the wrong device", what);
}
void Tensor::expect_contiguous(const char* what) const {
  NC_CHECK(is_contiguous(), "{}: tensor of shape {} is not contiguous", what, shape_str(shape_));
}

void Tensor::check_type(size_t elem_size) const {
  NC_CHECK(elem_size == dtype_size(dtype_), "tensor: element size {} does not match dtype {}",
           elem_size, dtype_name(dtype_));
}

}  // namespace nc

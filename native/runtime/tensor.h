// A Tensor is a typed, shaped view into a reference-counted Buffer on the CPU or a CUDA device.
// Views share the buffer; the memory goes when the last view does.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/dtype.h"

namespace e3 {

enum class Device : int32_t { CPU = 0, CUDA = 1 };
const char* device_name(Device d);

class Buffer {
 public:
  // Throws ERR_OUT_OF_MEMORY naming the size (and, on CUDA, the free memory) when it cannot.
  static std::shared_ptr<Buffer> allocate(Device device, size_t bytes);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  Buffer(Device device, void* data, size_t bytes) : data_(data), bytes_(bytes), device_(device) {}
  void* data_;
  size_t bytes_;
  Device device_;
};

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  Tensor(std::shared_ptr<Buffer> buf, size_t offset, DType dtype, Shape shape);
  static Tensor empty(Device device, DType dtype, Shape shape);

  bool defined() const { return buf_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const;  // negative counts from the end
  int rank() const { return int(shape_.size()); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  Device device() const { return buf_ ? buf_->device() : Device::CPU; }
  void* data() const { return static_cast<char*>(buf_->data()) + offset_; }
  template <class T>
  T* ptr() const { return static_cast<T*>(data()); }
  const std::shared_ptr<Buffer>& buffer() const { return buf_; }

  Tensor view(Shape shape) const;                     // same elements, new shape
  Tensor rows(int64_t begin, int64_t end) const;      // slice of dim 0
  std::string describe() const;                       // "bf16[3,4] on cuda"

 private:
  std::shared_ptr<Buffer> buf_;
  size_t offset_ = 0;
  DType dtype_ = DType::F32;
  Shape shape_;
};

// Synchronous copies between host memory and a tensor (any device); offsets in bytes.
void copy_from_host(const Tensor& dst, size_t dst_offset, const void* src, size_t bytes);
void copy_to_host(const Tensor& src, size_t src_offset, void* dst, size_t bytes);
void copy_tensor(const Tensor& dst, const Tensor& src);  // same dtype and numel, any devices

// Shape/dtype checks used by ops: throw ERR_INVALID_ARGUMENT naming `what`.
void expect_dtype(const Tensor& t, DType dt, const char* what);
void expect_shape(const Tensor& t, const Shape& s, const char* what);

}  // namespace e3

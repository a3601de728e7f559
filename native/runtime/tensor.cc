#include "runtime/tensor.h"

#include <cstdlib>
#include <cstring>

#include "runtime/cuda_util.h"
#include "runtime/error.h"

namespace e3 {

const char* device_name(Device d) { return d == Device::CUDA ? "cuda" : "cpu"; }

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::shared_ptr<Buffer> Buffer::allocate(Device device, size_t bytes) {
  size_t n = bytes ? bytes : 1;  // zero-sized tensors still get a unique pointer
  void* p = nullptr;
  if (device == Device::CPU) {
    p = std::aligned_alloc(64, (n + 63) / 64 * 64);
    E3_CHECK(p, OutOfMemory, "cannot allocate " + std::to_string(bytes) + " bytes of host memory");
  } else {
    p = cuda_malloc(n);
  }
  return std::shared_ptr<Buffer>(new Buffer(device, p, bytes));
}

Buffer::~Buffer() {
  if (device_ == Device::CPU) std::free(data_);
  else cuda_free(data_);
}

Tensor::Tensor(std::shared_ptr<Buffer> buf, size_t offset, DType dtype, Shape shape)
    : buf_(std::move(buf)), offset_(offset), dtype_(dtype), shape_(std::move(shape)) {
  for (int64_t d : shape_) E3_ARG(d >= 0, "negative dimension in shape " + shape_str(shape_));
  E3_ARG(offset_ + nbytes() <= buf_->bytes(), "tensor " + describe() + " does not fit its buffer");
}

Tensor Tensor::empty(Device device, DType dtype, Shape shape) {
  size_t bytes = size_t(shape_numel(shape)) * dtype_size(dtype);
  return Tensor(Buffer::allocate(device, bytes), 0, dtype, std::move(shape));
}

int64_t Tensor::dim(int i) const {
  int r = rank();
  int j = i < 0 ? i + r : i;
  E3_ARG(j >= 0 && j < r, "dimension " + std::to_string(i) + " out of range for " + describe());
  return shape_[j];
}

Tensor Tensor::view(Shape shape) const {
  E3_ARG(shape_numel(shape) == numel(), "cannot view " + describe() + " as " + shape_str(shape));
  return Tensor(buf_, offset_, dtype_, std::move(shape));
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  E3_ARG(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
         "rows [" + std::to_string(begin) + "," + std::to_string(end) + ") out of range for " + describe());
  Shape s = shape_;
  s[0] = end - begin;
  size_t row_bytes = shape_[0] ? nbytes() / size_t(shape_[0]) : 0;
  return Tensor(buf_, offset_ + size_t(begin) * row_bytes, dtype_, std::move(s));
}

std::string Tensor::describe() const {
  return std::string(dtype_name(dtype_)) + shape_str(shape_) + " on " + device_name(device());
}

void copy_from_host(const Tensor& dst, size_t dst_offset, const void* src, size_t bytes) {
  E3_ARG(dst_offset + bytes <= dst.nbytes(), "copy of " + std::to_string(bytes) + " bytes at offset " +
                                                 std::to_string(dst_offset) + " overruns " + dst.describe());
  char* d = static_cast<char*>(dst.data()) + dst_offset;
  if (dst.device() == Device::CPU) std::memcpy(d, src, bytes);
  else cuda_memcpy(d, src, bytes, CopyKind::HostToDevice);
}

void copy_to_host(const Tensor& src, size_t src_offset, void* dst, size_t bytes) {
  E3_ARG(src_offset + bytes <= src.nbytes(), "copy of " + std::to_string(bytes) + " bytes at offset " +
                                                 std::to_string(src_offset) + " overruns " + src.describe());
  const char* s = static_cast<const char*>(src.data()) + src_offset;
  if (src.device() == Device::CPU) std::memcpy(dst, s, bytes);
  else cuda_memcpy(dst, s, bytes, CopyKind::DeviceToHost);
}

void copy_tensor(const Tensor& dst, const Tensor& src) {
  E3_ARG(dst.dtype() == src.dtype() && dst.numel() == src.numel(),
         "cannot copy " + src.describe() + " into " + dst.describe());
  if (dst.device() == Device::CPU && src.device() == Device::CPU) {
    std::memcpy(dst.data(), src.data(), src.nbytes());
    return;
  }
  CopyKind kind = dst.device() == Device::CPU ? CopyKind::DeviceToHost
                  : src.device() == Device::CPU ? CopyKind::HostToDevice
                                                : CopyKind::DeviceToDevice;
  cuda_memcpy(dst.data(), src.data(), src.nbytes(), kind);
}

void expect_dtype(const Tensor& t, DType dt, const char* what) {
  E3_ARG(t.dtype() == dt, std::string(what) + ": expected " + dtype_name(dt) + ", got " + t.describe());
}

void expect_shape(const Tensor& t, const Shape& s, const char* what) {
  E3_ARG(t.shape() == s, std::string(what) + ": expected shape " + shape_str(s) + ", got " + t.describe());
}

}  // namespace e3

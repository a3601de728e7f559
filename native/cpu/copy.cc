#include <cstring>

#include "cpu/cpu_ops.h"
#include "runtime/error.h"

namespace e3 {

void CpuOps::gather_rows(const Tensor& x, const Tensor& rows, const Tensor& out) {
  expect_dtype(rows, DType::I32, "gather_rows rows");
  E3_ARG(x.dtype() == out.dtype() && out.dim(0) == rows.numel() && out.numel() / out.dim(0) == x.numel() / x.dim(0),
         "gather_rows: " + x.describe() + " by " + rows.describe() + " into " + out.describe());
  size_t row_bytes = x.nbytes() / size_t(x.dim(0));
  const int32_t* r = rows.ptr<int32_t>();
  for (int64_t i = 0; i < rows.numel(); ++i) {
    E3_ARG(r[i] >= 0 && r[i] < x.dim(0), "gather_rows: row " + std::to_string(r[i]) + " out of range for " + x.describe());
    std::memcpy(out.ptr<char>() + i * row_bytes, x.ptr<char>() + r[i] * row_bytes, row_bytes);
  }
}

void CpuOps::scatter_rows(const Tensor& src, const Tensor& rows, const Tensor& dst) {
  expect_dtype(rows, DType::I32, "scatter_rows rows");
  E3_ARG(src.dtype() == dst.dtype() && src.dim(0) == rows.numel() && dst.numel() / dst.dim(0) == src.numel() / std::max<int64_t>(1, src.dim(0)),
         "scatter_rows: " + src.describe() + " by " + rows.describe() + " into " + dst.describe());
  size_t row_bytes = dst.nbytes() / size_t(dst.dim(0));
  const int32_t* r = rows.ptr<int32_t>();
  for (int64_t i = 0; i < rows.numel(); ++i) {
    E3_ARG(r[i] >= 0 && r[i] < dst.dim(0), "scatter_rows: row " + std::to_string(r[i]) + " out of range for " + dst.describe());
    std::memcpy(dst.ptr<char>() + r[i] * row_bytes, src.ptr<char>() + i * row_bytes, row_bytes);
  }
}

void CpuOps::copy_columns(const Tensor& src, const Tensor& dst, int64_t col) {
  int64_t R = src.dim(0), C = src.numel() / R, D = dst.numel() / dst.dim(0);
  E3_ARG(src.dtype() == dst.dtype() && dst.dim(0) == R && col >= 0 && col + C <= D,
         "copy_columns: " + src.describe() + " into " + dst.describe() + " at column " + std::to_string(col));
  size_t es = dtype_size(src.dtype());
  for (int64_t r = 0; r < R; ++r)
    std::memcpy(dst.ptr<char>() + (r * D + col) * es, src.ptr<char>() + r * C * es, size_t(C) * es);
}

void CpuOps::copy(const Tensor& src, const Tensor& dst) {
  check_copy(Device::CPU, src, dst);
  std::memcpy(dst.data(), src.data(), src.nbytes());
}

}  // namespace e3

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cpu/cpu_ops.h"
#include "runtime/error.h"

namespace e3 {

void CpuOps::rmsnorm(const Tensor& x, const Tensor& w, float eps, const Tensor& out, const NormPlacement& at) {
  // x may also be a bf16 table (an embedding) whose rows are gathered.
  E3_ARG(x.dtype() == DType::F32 || (at.rows.defined() && x.dtype() == DType::BF16),
         "rmsnorm x: expected f32 (or gathered bf16 rows), got " + x.describe());
  expect_dtype(out, DType::F32, "rmsnorm out");
  const NormShape shape = check_norm(x, w, out, at, Device::CPU);
  const int64_t n = w.dim(-1), groups = w.numel() / n, x_rows = x.numel() / n;
  std::vector<float> converted(x.dtype() == DType::F32 ? 0 : size_t(n));
  for (int64_t r = 0; r < shape.rows; ++r) {
    int64_t src = at.rows.defined() ? at.rows.ptr<int32_t>()[r] : r;
    E3_ARG(src >= 0 && src < x_rows, "rmsnorm: row index " + std::to_string(src) + " outside " + x.describe());
    const float* xr = converted.empty() ? x.ptr<float>() + src * n : converted.data();
    for (int64_t i = 0; i < int64_t(converted.size()); ++i) converted[size_t(i)] = load_f32(x, src * n + i);
    float* o = out.ptr<float>() + r * shape.out_ld + at.col;
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(xr[i]) * xr[i];
    float inv = float(1.0 / std::sqrt(ss / double(n) + eps));
    for (int64_t i = 0; i < n; ++i) o[i] = xr[i] * inv * load_f32(w, (r % groups) * n + i);
  }
}

void CpuOps::add_rmsnorm(const Tensor& residual, const Tensor& x, const Tensor& w, float eps, const Tensor& out,
                         const ResidualCapture& capture) {
  expect_dtype(residual, DType::F32, "add_rmsnorm residual");
  expect_dtype(x, DType::F32, "add_rmsnorm x");
  E3_ARG(residual.numel() == x.numel(), "add_rmsnorm: " + residual.describe() + " vs " + x.describe());
  const int64_t n = w.dim(-1), rows = n > 0 ? x.numel() / n : 0;
  check_capture(capture, rows, n, Device::CPU, DType::F32);
  float* r = residual.ptr<float>();
  const float* xp = x.ptr<float>();
  for (int64_t i = 0; i < x.numel(); ++i) r[i] += xp[i];
  rmsnorm(residual, w, eps, out, {});
  for (int64_t t = 0; t < rows && !capture.cols.empty(); ++t) {
    int64_t row = capture.rows.defined() ? capture.rows.ptr<int32_t>()[t] : t;
    E3_ARG(row >= 0 && row < capture.dst.dim(0), "add_rmsnorm capture row " + std::to_string(row) + " outside " +
                                                     capture.dst.describe());
    for (int64_t col : capture.cols)
      std::copy_n(r + t * n, n, capture.dst.ptr<float>() + row * capture.dst.dim(1) + col);
  }
}

}  // namespace e3

#include <algorithm>
#include <cmath>
#include <string>

#include "cpu/cpu_ops.h"
#include "runtime/error.h"

namespace e3 {

static void rmsnorm_rows(const float* x, const Tensor& w, float eps, float* out, int64_t rows, int64_t n) {
  int64_t groups = w.numel() / n;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t wo = (r % groups) * n;
    const float* xr = x + r * n;
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(xr[i]) * xr[i];
    float inv = float(1.0 / std::sqrt(ss / double(n) + eps));
    for (int64_t i = 0; i < n; ++i) out[r * n + i] = xr[i] * inv * load_f32(w, wo + i);
  }
}

void CpuOps::rmsnorm(const Tensor& x, const Tensor& w, float eps, const Tensor& out) {
  expect_dtype(x, DType::F32, "rmsnorm x");
  expect_dtype(out, DType::F32, "rmsnorm out");
  int64_t n = w.dim(-1);
  E3_ARG(n > 0 && x.numel() % w.numel() == 0 && out.numel() == x.numel(),
         "rmsnorm: " + x.describe() + " is not rows of the weight " + w.describe());
  rmsnorm_rows(x.ptr<float>(), w, eps, out.ptr<float>(), x.numel() / n, n);
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
  rmsnorm(residual, w, eps, out);
  for (int64_t t = 0; t < rows && !capture.cols.empty(); ++t) {
    int64_t row = capture.rows.defined() ? capture.rows.ptr<int32_t>()[t] : t;
    E3_ARG(row >= 0 && row < capture.dst.dim(0), "add_rmsnorm capture row " + std::to_string(row) + " outside " +
                                                     capture.dst.describe());
    for (int64_t col : capture.cols)
      std::copy_n(r + t * n, n, capture.dst.ptr<float>() + row * capture.dst.dim(1) + col);
  }
}

}  // namespace e3

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/cpu_ops.h"
#include "runtime/error.h"
#include "runtime/parallel.h"

namespace e3 {

void CpuOps::linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out) {
  expect_dtype(x, DType::F32, "linear x");
  expect_dtype(out, DType::F32, "linear out");
  int64_t T = x.dim(0), K = x.dim(-1), N = w.dim(0);
  E3_ARG(w.rank() == 2 && w.dim(1) == K, "linear: input " + x.describe() + " does not match weight " + w.describe());
  expect_shape(out, {T, N}, "linear out");
  if (bias) E3_ARG(bias->numel() == N, "linear: bias " + bias->describe() + " does not match weight " + w.describe());
  const float* xp = x.ptr<float>();
  float* op = out.ptr<float>();
  const auto* wp = static_cast<const uint8_t*>(w.data());
  const size_t row_bytes = size_t(K) * dtype_size(w.dtype());
  // One weight row is widened once (in bulk, into a buffer each thread keeps) and used for every
  // token. A thread gets at least 2^18 multiply-adds: starting one costs more than fewer.
  parallel_for(N, std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(1, K * T)), [&](int64_t n) {
    thread_local std::vector<float> wr;
    wr.resize(size_t(K));
    convert_elements(wp + size_t(n) * row_bytes, w.dtype(), wr.data(), DType::F32, size_t(K));
    float b = bias ? load_f32(*bias, n) : 0.0f;
    for (int64_t t = 0; t < T; ++t) {
      const float* xr = xp + t * K;
      float acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += xr[k] * wr[size_t(k)];
      op[t * N + n] = acc + b;
    }
  });
}

}  // namespace e3

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
  // One weight row is widened once and used for every token.
  parallel_for(N, 64, [&](int64_t n) {
    std::vector<float> wr(size_t(K), 0.0f);
    for (int64_t k = 0; k < K; ++k) wr[size_t(k)] = load_f32(w, n * K + k);
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

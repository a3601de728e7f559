#include <cmath>

#include "cpu/cpu_ops.h"
#include "runtime/error.h"

namespace e3 {

void CpuOps::silu_mul(const Tensor& gate_up, const Tensor& out) {
  expect_dtype(gate_up, DType::F32, "silu_mul gate_up");
  expect_dtype(out, DType::F32, "silu_mul out");
  int64_t T = gate_up.dim(0), I = gate_up.dim(1) / 2;
  expect_shape(out, {T, I}, "silu_mul out");
  const float* g = gate_up.ptr<float>();
  float* o = out.ptr<float>();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < I; ++i) {
      float a = g[t * 2 * I + i], b = g[t * 2 * I + I + i];
      o[t * I + i] = a / (1.0f + std::exp(-a)) * b;
    }
}

}  // namespace e3

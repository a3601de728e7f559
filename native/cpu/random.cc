#include "cpu/cpu_ops.h"
#include "runtime/error.h"
#include "runtime/rng.h"

namespace e3 {

void CpuOps::fill_normal(const Tensor& t, uint64_t seed, float mean, float std) {
  expect_cpu(t, "fill_normal");
  E3_ARG(t.dtype() == DType::BF16 || t.dtype() == DType::F32, "fill_normal needs a bf16 or f32 tensor, got " + t.describe());
  for (int64_t i = 0; i < t.numel(); ++i) {
    float v = mean + std * normal01(seed, uint64_t(i));
    if (t.dtype() == DType::F32) t.ptr<float>()[i] = v;
    else t.ptr<uint16_t>()[i] = float_to_bf16(v);
  }
}

}  // namespace e3

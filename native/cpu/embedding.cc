#include "cpu/cpu_ops.h"
#include "runtime/error.h"

namespace e3 {

void CpuOps::embedding(const Tensor& ids, const Tensor& table, const Tensor& out) {
  expect_dtype(ids, DType::I32, "embedding ids");
  expect_dtype(out, DType::F32, "embedding out");
  int64_t T = ids.numel(), V = table.dim(0), H = table.dim(1);
  expect_shape(out, {T, H}, "embedding out");
  const int32_t* id = ids.ptr<int32_t>();
  float* o = out.ptr<float>();
  for (int64_t t = 0; t < T; ++t) {
    E3_ARG(id[t] >= 0 && id[t] < V, "token id " + std::to_string(id[t]) + " outside the vocabulary of " +
                                        std::to_string(V) + " at position " + std::to_string(t));
    for (int64_t h = 0; h < H; ++h) o[t * H + h] = load_f32(table, id[t] * H + h);
  }
}

}  // namespace e3

#include <algorithm>
#include <vector>

#include "cpu/cpu_ops.h"
#include "runtime/error.h"
#include "runtime/rng.h"
#include "runtime/sampling_filter.h"

namespace e3 {

// One inverse-CDF draw over the filtered distribution in ascending id order, as the CUDA kernel
// does, so both pick the same token for the same uniform number.
static int32_t sample_row(const float* logits, int64_t V, const SamplingParams& sp, std::vector<float>& probs) {
  if (sp.temperature <= 0) return int32_t(std::max_element(logits, logits + V) - logits);
  const float* p = filtered_probs(logits, V, sp, probs);
  double total = 0;
  for (int64_t v = 0; v < V; ++v) total += p[v];
  double target = double(uniform01(sp.seed, sp.counter, 0)) * total, acc = 0;
  int32_t last = 0;
  for (int64_t v = 0; v < V; ++v) {
    if (p[v] <= 0) continue;
    last = int32_t(v);
    if ((acc += p[v]) > target) return last;
  }
  return last;
}

void CpuOps::argmax(const Tensor& logits, const Tensor& tokens) {
  expect_dtype(logits, DType::F32, "argmax logits");
  expect_dtype(tokens, DType::I32, "argmax tokens");
  int64_t R = logits.dim(0), V = logits.dim(1);
  E3_ARG(tokens.numel() == R, "argmax: one token per row");
  for (int64_t r = 0; r < R; ++r) {
    const float* l = logits.ptr<float>() + r * V;
    tokens.ptr<int32_t>()[r] = int32_t(std::max_element(l, l + V) - l);
  }
}

void CpuOps::sample(const Tensor& logits, const Tensor& params, const Tensor& tokens) {
  expect_dtype(logits, DType::F32, "sample logits");
  expect_dtype(tokens, DType::I32, "sample tokens");
  int64_t R = logits.dim(0), V = logits.dim(1);
  E3_ARG(tokens.numel() == R && params.nbytes() == size_t(R) * sizeof(SamplingParams),
         "sample: " + std::to_string(R) + " rows need as many params and tokens");
  const SamplingParams* sp = static_cast<const SamplingParams*>(params.data());
  std::vector<float> probs;
  for (int64_t r = 0; r < R; ++r) tokens.ptr<int32_t>()[r] = sample_row(logits.ptr<float>() + r * V, V, sp[r], probs);
}

}  // namespace e3

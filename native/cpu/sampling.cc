#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "cpu/cpu_ops.h"
#include "runtime/error.h"
#include "runtime/rng.h"

namespace e3 {

// transformers' order: temperature, top-k, top-p (drop the tokens whose ascending cumulative
// probability is <= 1 - top_p, keeping at least one), softmax, then one draw by inverse CDF over
// the kept tokens sorted by descending probability (ties by ascending id).
static int32_t sample_row(const float* logits, int64_t V, const SamplingParams& sp) {
  if (sp.temperature <= 0) return int32_t(std::max_element(logits, logits + V) - logits);
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  size_t keep = size_t(V);
  if (sp.top_k > 0) keep = std::min(keep, size_t(sp.top_k));
  std::vector<double> prob(keep);
  double mx = logits[order[0]] / sp.temperature, sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += prob[i] = std::exp(double(logits[order[i]]) / sp.temperature - mx);
  for (double& p : prob) p /= sum;
  if (sp.top_p < 1.0f) {
    // Ascending cumulative mass from the least likely kept token upward.
    double cum = 0;
    size_t cut = keep;
    for (size_t i = keep; i-- > 1;) {
      cum += prob[i];
      if (cum <= 1.0 - double(sp.top_p)) cut = i;
      else break;
    }
    keep = cut;
    sum = 0;
    for (size_t i = 0; i < keep; ++i) sum += prob[i];
    for (size_t i = 0; i < keep; ++i) prob[i] /= sum;
  }
  double u = uniform01(sp.seed, sp.counter, 0), acc = 0;
  for (size_t i = 0; i < keep; ++i)
    if (u < (acc += prob[i])) return order[i];
  return order[keep - 1];
}

void CpuOps::sample(const Tensor& logits, const Tensor& params, const Tensor& tokens) {
  expect_dtype(logits, DType::F32, "sample logits");
  expect_dtype(tokens, DType::I32, "sample tokens");
  int64_t R = logits.dim(0), V = logits.dim(1);
  E3_ARG(tokens.numel() == R && params.nbytes() == size_t(R) * sizeof(SamplingParams),
         "sample: " + std::to_string(R) + " rows need as many params and tokens");
  const SamplingParams* sp = static_cast<const SamplingParams*>(params.data());
  for (int64_t r = 0; r < R; ++r) tokens.ptr<int32_t>()[r] = sample_row(logits.ptr<float>() + r * V, V, sp[r]);
}

}  // namespace e3

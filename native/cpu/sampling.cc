#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "cpu/cpu_ops.h"
#include "runtime/error.h"
#include "runtime/rng.h"

namespace e3 {

// transformers' filters in its order: temperature, top-k, top-p (keep the most likely tokens
// until their mass reaches top_p, at least one). The draw is then one inverse-CDF step over the
// kept tokens in ascending id order, as the CUDA kernel does, so both pick the same token for the
// same uniform number.
static int32_t sample_row(const float* logits, int64_t V, const SamplingParams& sp) {
  if (sp.temperature <= 0) return int32_t(std::max_element(logits, logits + V) - logits);
  float mx = *std::max_element(logits, logits + V);
  std::vector<double> z(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) z[size_t(i)] = std::exp(double(logits[i] - mx) / sp.temperature);
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  size_t keep = size_t(V);
  if (sp.top_k > 0 && size_t(sp.top_k) < keep) {  // ties with the k-th value stay, as in transformers
    keep = size_t(sp.top_k);
    while (keep < size_t(V) && logits[order[keep]] == logits[order[keep - 1]]) ++keep;
  }
  if (sp.top_p < 1.0f) {
    double total = 0, mass = 0;
    for (size_t i = 0; i < keep; ++i) total += z[size_t(order[i])];
    size_t n = 0;
    while (n < keep && mass < double(sp.top_p) * total) mass += z[size_t(order[n++])];
    keep = std::max<size_t>(1, n);
  }
  std::vector<int32_t> kept(order.begin(), order.begin() + long(keep));
  std::sort(kept.begin(), kept.end());
  double total = 0;
  for (int32_t id : kept) total += z[size_t(id)];
  double target = double(uniform01(sp.seed, sp.counter, 0)) * total, acc = 0;
  for (int32_t id : kept)
    if ((acc += z[size_t(id)]) > target) return id;
  return kept.back();
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
